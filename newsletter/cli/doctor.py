"""``doctor``: is this installation ready for a real send?"""

from __future__ import annotations

import json

import click

from newsletter.cli import common
from newsletter.core.text import terminal_safe

MARKS = {"ok": ("ok", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red"), "skip": ("skip", None)}
SUMMARY = {
    0: "Ready for a real send.",
    1: "A send would go out, but fix the warnings above.",
    2: "Not ready: a send would fail, or its mail be refused or junked.",
}


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the checks as JSON: {\"exit_code\", \"checks\": [{\"name\", \"status\", \"detail\", "
                   "\"fix\"}]}.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check that this installation is ready for a real send:
    the secret key, the public base URL, the SES account (out of the sandbox),
    the From identity with DKIM and a custom MAIL FROM domain, the
    configuration set with bounce and complaint events to SNS, the listed SNS
    topics, and the From domain's DMARC record. It only reads: nothing is
    changed or sent.

    One line per check (ok, WARN, FAIL or skip), with what to do under each
    one that is not ok. Exit codes: 0 ready, 1 warnings only, 2 a send would
    fail (or a setting is malformed).
    """
    from newsletter.operators.doctor import exit_code, run_checks

    checks = run_checks(common.settings_of(ctx))
    code = exit_code(checks)
    if as_json:
        click.echo(json.dumps({"exit_code": code, "checks": [
            {"name": c.name, "status": str(c.status), "detail": c.detail, "fix": c.fix} for c in checks
        ]}, indent=2))
        ctx.exit(code)
    width = max(len(check.name) for check in checks)
    for check in checks:
        mark, colour = MARKS[check.status]
        # Details quote settings and AWS's answers: shown escaped.
        click.echo(f"{click.style(f'{mark:<4}', fg=colour, bold=colour is not None)}  "
                   f"{check.name:<{width}}  {terminal_safe(check.detail)}")
        if check.status != "ok" and check.fix:
            click.echo(f"{'':<{width + 8}}fix: {terminal_safe(check.fix)}")
    click.echo(SUMMARY[code])
    ctx.exit(code)

/* html-validate's rules for the rendered email and its web version
 * (tests/test_email_checks.py runs the CLI with this file).
 *
 * The recommended and document presets apply, less the rules below. Each of
 * them asks for what email HTML cannot do: the email is read by mail clients
 * (Outlook for Windows renders with Word, Gmail rewrites styles), not only
 * by browsers, and the web version is the same MJML compiled for the web.
 */
module.exports = {
  root: true,
  extends: ["html-validate:recommended", "html-validate:document"],
  rules: {
    // Inline styles are the only CSS every mail client keeps: several drop
    // or rewrite <style> blocks, so CSS is inlined on purpose (premailer).
    "no-inline-style": "off",
    // Outlook for Windows needs <!--[if mso]> tables to lay out fixed-width
    // columns; MJML writes them, and other clients see comments.
    "no-conditional-comment": "off",
    // cellpadding, cellspacing, border, align, valign, width and bgcolor are
    // what Outlook and older webmail honour where they ignore the CSS.
    "no-deprecated-attr": "off",
    // MJML's wrapper is <div role="article" aria-roledescription="email">,
    // the accessible pattern for email: mail clients drop or restyle
    // sectioning elements such as <article>.
    "prefer-native-element": "off",
    // Style only: MJML writes "<!doctype html>" and XHTML-style void
    // elements (<meta />, <br/>); both are valid HTML.
    "doctype-style": "off",
    "void-style": "off",
  },
};

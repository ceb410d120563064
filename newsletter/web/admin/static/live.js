// The live view of a running send: every few seconds, the figures of each
// [data-live] section are read again from its JSON address and written
// into its [data-field] elements. Without this script the page shows the
// figures of when it was loaded, and a reload brings new ones.
"use strict";

(function () {
  var PERIOD_MS = 3000;
  var number = new Intl.NumberFormat("en");

  function show(section, figures) {
    section.querySelectorAll("[data-field]").forEach(function (element) {
      var name = element.getAttribute("data-field");
      var value = figures[name];
      if (name === "rate") {
        element.textContent = value === null ? "not yet measured" : number.format(value) + " per second";
      } else if (name === "state") {
        element.textContent = value === "running" ? "running" : "over: reload the page for the final figures";
      } else if (typeof value === "number") {
        element.textContent = number.format(value);
      } else if (value !== undefined) {
        element.textContent = value;
      }
    });
  }

  function poll(section) {
    var address = section.getAttribute("data-live");
    fetch(address, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || response.headers.get("Content-Type") !== "application/json") {
          throw new Error("no figures (" + response.status + ")");
        }
        return response.json();
      })
      .then(function (figures) {
        show(section, figures);
        section.setAttribute("data-updated", figures.last);
        if (figures.state === "running") {
          window.setTimeout(function () { poll(section); }, PERIOD_MS);
        }
      })
      .catch(function () {
        // Logged out, or the server is gone: leave the figures as they are.
        section.setAttribute("data-stopped", "true");
      });
  }

  document.querySelectorAll("[data-live]").forEach(function (section) {
    window.setTimeout(function () { poll(section); }, PERIOD_MS);
  });
})();

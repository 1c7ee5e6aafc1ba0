// Torale's few behaviours that need a script. Everything works without it (forms post, pages
// read); this adds local times, the browser's time zone, copy/reveal buttons and confirmations.
// Loaded as a file: the pages' Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var localFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });

  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      var zone = node.getAttribute("data-zone");
      var format = localFormat;
      if (zone) {
        try {
          format = new Intl.DateTimeFormat(undefined, {
            dateStyle: "medium",
            timeStyle: "short",
            timeZone: zone,
          });
        } catch (e) {
          format = localFormat;
        }
      }
      var text = format.format(when);
      if (node.getAttribute("data-format") === "full") node.textContent = text;
      else node.title = text;
      if (node.hasAttribute("data-relative")) node.textContent = relative(when);
    });
  }

  // The server writes times absolute (a page may be served from its cache long after it was
  // rendered); the browser says how far they are from now, as formatting.relative would.
  function span(seconds) {
    seconds = Math.abs(seconds);
    if (seconds < 60) return Math.floor(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 2 * 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " days";
  }

  function relative(when) {
    var delta = (when.getTime() - Date.now()) / 1000;
    if (Math.abs(delta) < 30) return "just now";
    return delta > 0 ? "in " + span(delta) : span(delta) + " ago";
  }

  function refreshRelativeTimes() {
    document.querySelectorAll("time[data-relative]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when.getTime())) node.textContent = relative(when);
    });
  }

  function defaultTimeZone(root) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    root.querySelectorAll("input[data-default-tz]").forEach(function (input) {
      if (!input.value) input.value = zone;
    });
    var list = root.querySelector("datalist#zones");
    if (list && !list.children.length && Intl.supportedValuesOf) {
      Intl.supportedValuesOf("timeZone").forEach(function (name) {
        var option = document.createElement("option");
        option.value = name;
        list.appendChild(option);
      });
    }
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var field = document.querySelector(copy.getAttribute("data-copy"));
      if (field && navigator.clipboard) {
        navigator.clipboard.writeText(field.value).then(function () {
          var label = copy.querySelector("span");
          if (label) label.textContent = "Copied";
        });
      }
    }
    var reveal = event.target.closest("[data-reveal]");
    if (reveal) {
      var secret = document.querySelector(reveal.getAttribute("data-reveal"));
      if (secret) {
        var hidden = secret.type === "password";
        secret.type = hidden ? "text" : "password";
        var text = reveal.querySelector("span");
        if (text) text.textContent = hidden ? "Hide" : "Reveal";
      }
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  function ready(root) {
    localiseTimes(root);
    defaultTimeZone(root);
  }

  // Deferred scripts run once the document is parsed and before htmx processes it, so the
  // time zone is in place before the next-run preview first asks.
  ready(document);
  window.setInterval(refreshRelativeTimes, 30000);
  document.addEventListener("htmx:afterSettle", function (event) {
    ready(event.target);
  });
})();

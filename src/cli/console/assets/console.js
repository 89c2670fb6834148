// berth console: keeps <main> current while the cluster changes. The pages work without
// it; it only listens to /live (Server-Sent Events) and fetches the page's new content.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  if (!live || !main || !window.EventSource || !window.fetch) return;
  var shown = main.getAttribute("data-revision");
  var timer = null;
  var busy = false;
  function later(ms) { if (!timer) timer = setTimeout(refresh, ms); }
  function editing() {
    var a = document.activeElement;
    return a && main.contains(a) && a.closest("form") && a.tagName !== "BUTTON";
  }
  function refresh() {
    timer = null;
    if (busy || editing()) { later(500); return; }
    busy = true;
    fetch(location.href, { headers: { "X-Berth-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { main.innerHTML = html; })
      .catch(function () { later(1000); })
      .then(function () { busy = false; });
  }
  var source = new EventSource("/live");
  source.addEventListener("change", function (ev) {
    live.textContent = "Live (revision " + ev.data + ")";
    live.className = "up";
    if (ev.data !== shown) { shown = ev.data; later(20); }
  });
  source.onopen = function () { live.textContent = "Live"; live.className = "up"; };
  source.onerror = function () {
    live.textContent = "Connection lost; reconnecting…";
    live.className = "down";
  };
})();

// The Invites grid: filters by person, platform and status (in the page: names never leave it), and
// links that open Airflow's own pages in the top window when the page is shown inside the Airflow UI.
(function () {
  "use strict";

  // Airflow shows plugin pages in a sandboxed iframe (scripts and same origin, no top navigation): a
  // link to one of its pages would open the whole UI inside the frame. Instead, hand the URL to the
  // UI's router in the top window, as its own links do (history entry + popstate).
  function openInAirflow(event) {
    var link = event.target.closest && event.target.closest("a[target=_top]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    if (window.top === window) return; // not framed: an ordinary link
    try {
      var top = window.top;
      var state = top.history.state;
      var idx = state && typeof state.idx === "number" ? state.idx + 1 : 0;
      var key = Math.random().toString(36).slice(2, 10);
      top.history.pushState({ usr: null, key: key, idx: idx }, "", link.href);
      top.dispatchEvent(new top.PopStateEvent("popstate", { state: top.history.state }));
      event.preventDefault();
    } catch (error) {
      // the top window is not ours to drive: let the browser follow the link
    }
  }
  document.addEventListener("click", openInAirflow);

  var table = document.getElementById("grid");
  if (!table) return;
  var person = document.getElementById("f-person");
  var platform = document.getElementById("f-platform");
  var status = document.getElementById("f-status");
  var shown = document.getElementById("shown");
  var total = Number(shown.getAttribute("data-total"));
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var names = rows.map(function (row) {
    return row.cells[0].textContent.toLowerCase();
  });
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);

  function apply() {
    var text = person.value.trim().toLowerCase();
    var wantPlatform = platform.value;
    var wantStatus = status.value;
    headers.forEach(function (th) {
      var name = th.getAttribute("data-platform");
      if (name !== null) th.hidden = wantPlatform !== "" && name !== wantPlatform;
    });
    var count = 0;
    rows.forEach(function (row, i) {
      var match = false;
      for (var c = 0; c < row.cells.length; c++) {
        var td = row.cells[c];
        var name = td.getAttribute("data-platform");
        if (name === null) continue;
        var inPlatform = wantPlatform === "" || name === wantPlatform;
        td.hidden = !inPlatform;
        var cellStatus = td.getAttribute("data-status");
        if (inPlatform && cellStatus !== null && (wantStatus === "" || cellStatus === wantStatus)) match = true;
      }
      var visible = match && (text === "" || names[i].indexOf(text) !== -1);
      row.hidden = !visible;
      if (visible) count += 1;
    });
    shown.textContent = count === total ? total + " people" : count + " of " + total + " people";
  }

  document.getElementById("filters").addEventListener("submit", function (event) {
    event.preventDefault();
  });
  Array.prototype.forEach.call(document.querySelectorAll(".legend li"), function (item) {
    item.addEventListener("click", function () {
      var wanted = item.getAttribute("data-status");
      status.value = status.value === wanted ? "" : wanted;
      apply();
    });
  });
  person.addEventListener("input", apply);
  platform.addEventListener("change", apply);
  status.addEventListener("change", apply);
})();

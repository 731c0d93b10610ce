(function () {
  "use strict";
  var all = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  function setAll(open) { all("details").forEach(function (d) { d.open = open; }); }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  window.addEventListener("beforeprint", function () { setAll(true); });

  function row(dl, name, value) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name; dd.textContent = value; dl.appendChild(dt); dl.appendChild(dd);
  }
  function show(g) {
    var section = g.closest("details.mem"), panel = section && section.querySelector(".vma-detail");
    if (!panel) { return; }
    all(".vma.selected", section).forEach(function (x) { x.classList.remove("selected"); });
    g.classList.add("selected");
    var s = g.dataset, dl = document.createElement("dl"), pages = Number(s.pages) || 0;
    var pct = function (n) { return pages ? " (" + (100 * Number(n) / pages).toFixed(1) + "%)" : ""; };
    row(dl, "range", s.start + " – " + s.end);
    row(dl, "protection", s.prot);
    row(dl, "kind", s.kind);
    row(dl, "backing", s.backing || "(anonymous)");
    row(dl, "pages", String(pages));
    row(dl, "dumped here", s.present + pct(s.present));
    row(dl, "in a parent dump", s.parent + pct(s.parent));
    row(dl, "lazy", s.lazy + pct(s.lazy));
    row(dl, "not dumped", s.untouched + pct(s.untouched));
    if (s.change) { row(dl, "since the older dump", s.change + ": " + s.changeText); }
    panel.replaceChildren(dl);
  }
  document.addEventListener("click", function (e) {
    var g = e.target.closest && e.target.closest("g.vma");
    if (g) { show(g); }
  });
  document.addEventListener("keydown", function (e) {
    var g = e.target.closest && e.target.closest("g.vma");
    if (g && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); show(g); }
  });

  // Find the mapping that holds an address: open its process, mark it, show it.
  function big(text) {
    text = String(text).trim().toLowerCase();
    if (!/^(0x)?[0-9a-f]+$/.test(text)) { return null; }
    return BigInt(text.indexOf("0x") === 0 ? text : "0x" + text);
  }
  document.getElementById("find-address").addEventListener("submit", function (e) {
    e.preventDefault();
    var out = document.getElementById("addr-result"), addr = big(document.getElementById("addr").value);
    all(".vma.found").forEach(function (x) { x.classList.remove("found"); });
    if (addr === null) { out.textContent = "not a hex address"; return; }
    var hits = all("g.vma").filter(function (g) { return big(g.dataset.start) <= addr && addr < big(g.dataset.end); });
    out.textContent = hits.length ? hits.length + " mapping(s)" : "in no mapping";
    hits.forEach(function (g) {
      g.classList.add("found");
      for (var d = g.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) { d.open = true; }
      show(g);
    });
    if (hits.length) { hits[0].scrollIntoView({ block: "center" }); hits[0].focus({ preventScroll: true }); }
  });
}());

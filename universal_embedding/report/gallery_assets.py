"""Style sheet and script of neighbours.html (inlined: the page needs no other file).

Colours are the Okabe-Ito blue / vermillion pair, which deuteranopes and protanopes still tell
apart; relevance is also a mark (check / cross, as text) and a border style (solid / dashed).
The script only attaches the thumbnails (stored once per page in a JSON block) and runs the
filters and the sort; without it the page still lists every query with its marks as text.
"""

CSS = """
:root{--rel:#0072b2;--rel-bg:#dcecf9;--rel-ink:#004f7c;--non:#d55e00;--non-bg:#fce6d4;
--non-ink:#9a3f00;--line:#c8c8c8;--muted:#555}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;margin:0 auto;
max-width:1640px;padding:0 12px 48px}
h1{font-size:1.5em;margin:.6em 0 .3em}
h2{font-size:1.2em;margin:1.4em 0 .3em}
a{color:#0b57a4}
.legend{margin:.3em 0;max-width:75em}
.pages,.toc{margin:.3em 0}
.toc ul{margin:.2em 0;padding-left:1.2em;columns:2 22em}
.controls{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:flex-start;padding:8px 10px;
margin:8px 0;background:#f3f3f3;border:1px solid var(--line);border-radius:6px}
.controls fieldset{border:0;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:2px 10px}
.controls legend{font-weight:600;padding:0;margin-right:6px;float:left}
.controls label{white-space:nowrap}
.status{font-style:italic;color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{vertical-align:top;text-align:left;padding:6px 4px;border-bottom:1px solid var(--line)}
thead th{background:#f3f3f3;font-weight:600}
tbody th{font-weight:normal}
.cell{display:block;width:106px;padding:2px;border:3px solid #777;border-radius:4px;
font-size:11.5px;line-height:1.3;overflow-wrap:anywhere;background:#fff}
.cell img,.missing{display:block;margin:0 auto 2px;max-width:100%;height:auto}
.cell a{display:block}
.cell a:focus-visible{outline:3px solid #000;outline-offset:1px}
.query{border-style:double;border-color:#444;background:#f4f4f4}
.skipped .query{border-color:#999;background:#e6e6e6}
ol.nbs{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:5px}
.rel{border-color:var(--rel);border-style:solid;background:var(--rel-bg)}
.nonrel{border-color:var(--non);border-style:dashed;background:var(--non-bg)}
.chip{display:inline-block;padding:0 5px;border-width:3px;border-radius:4px;font-weight:700}
.mark{font-weight:700}
.rel .mark{color:var(--rel-ink)}
.nonrel .mark{color:var(--non-ink)}
.badge{display:inline-block;padding:0 4px;border-radius:3px;background:#333;color:#fff;
font-size:11px;margin-right:3px}
.badge.other{background:#fff;color:#111;border:1px solid #111}
.path{color:var(--muted);font-size:11px}
.stats{margin:0 0 4px;font-size:12.5px}
.missing{width:96px;height:72px;background:#777;color:#fff;font-size:11px;padding:4px}
.top{font-size:12px;font-weight:normal;margin-left:.6em}
@media (max-width:760px){
 body{padding:0 6px 32px}
 table,thead,tbody,tr,th,td{display:block;width:100%}
 thead{position:absolute;left:-10000px}
 tr{border-bottom:2px solid #888;padding:4px 0}
 th,td{border:0;padding:4px 0}
 .cell{width:116px}
 .toc ul{columns:1}
}
"""

JS = """
(function () {
  var thumbs = JSON.parse(document.getElementById('thumbs').textContent);
  document.querySelectorAll('img[data-thumb]').forEach(function (img) {
    img.src = thumbs[img.getAttribute('data-thumb')];
  });
  var form = document.getElementById('filters');
  if (!form) return;
  function checked(name) {
    var out = {};
    form.querySelectorAll('input[name="' + name + '"]').forEach(function (box) {
      out[box.value] = box.checked;
    });
    return out;
  }
  function rank(row, protocol) {
    var td = row.querySelector('td[data-protocol="' + protocol + '"]');
    return (td && parseInt(td.getAttribute('data-first-relevant'), 10)) || 1e6;
  }
  function apply() {
    var domains = checked('domain'), knns = checked('knn'), protocols = checked('protocol');
    var failures = form.elements.failures.checked, order = form.elements.sort.value;
    document.querySelectorAll('[data-protocol]').forEach(function (el) {
      el.hidden = !protocols[el.getAttribute('data-protocol')];
    });
    var shown = 0, total = 0;
    document.querySelectorAll('section.domain').forEach(function (sec) {
      var rows = Array.prototype.slice.call(sec.querySelectorAll('tr.qrow')), visible = 0;
      rows.forEach(function (row) {
        var fail = false;
        row.querySelectorAll('td[data-protocol]').forEach(function (td) {
          fail = fail || (protocols[td.getAttribute('data-protocol')] &&
                          td.getAttribute('data-failure') === '1');
        });
        row.hidden = !domains[row.getAttribute('data-domain')] ||
                     knns[row.getAttribute('data-knn')] === false || (failures && !fail);
        if (!row.hidden) visible++;
      });
      rows.sort(function (a, b) {
        var ia = +a.getAttribute('data-order'), ib = +b.getAttribute('data-order');
        if (order === 'order') return ia - ib;
        var sa = a.getAttribute('data-skipped') === '1';
        var sb = b.getAttribute('data-skipped') === '1';
        if (sa !== sb) return sa ? 1 : -1;  // skipped queries last in either direction
        var how = order.split(':'), d = rank(a, how[0]) - rank(b, how[0]);
        return (how[1] === 'worst' ? -d : d) || ia - ib;
      });
      var body = sec.querySelector('tbody');
      rows.forEach(function (row) { body.appendChild(row); });
      sec.hidden = visible === 0;
      shown += visible;
      total += rows.length;
    });
    document.getElementById('status').textContent =
      'Showing ' + shown + ' of ' + total + ' queries on this page.';
  }
  form.addEventListener('change', apply);
  apply();
})();
"""

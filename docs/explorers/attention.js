// The attention explorer: data/attention.js holds, for every layer and head, row i of the attention map (the weights
// query i puts on keys 0..i; the causal mask makes the rest 0), computed by the reference from the trained model.
(function () {
  "use strict";
  const data = window.ATTENTION_DATA;
  const $ = (id) => document.getElementById(id);
  const layer = $("attention-layer"), head = $("attention-head"), query = $("attention-query");
  const T = data.tokens.length;

  function option(select, value, text) {
    const element = document.createElement("option");
    element.value = String(value);
    element.textContent = text;
    select.appendChild(element);
  }
  data.weights.forEach((_, l) => option(layer, l, `layer ${l}`));
  data.weights[0].forEach((_, h) => option(head, h, `head ${h}`));
  query.max = String(T - 1);
  query.value = String(T - 1);

  const line = $("attention-line");
  const spans = data.tokens.map((token, i) => {
    const span = document.createElement("span");
    span.textContent = token === "\n" ? "⏎\n" : token;
    span.dataset.position = String(i);
    span.title = `position ${i}`;
    span.addEventListener("click", () => { query.value = String(i); update(); });
    line.appendChild(span);
    return span;
  });

  function drawMap(rows, selected) {
    const canvas = $("attention-map");
    const cell = Math.max(2, Math.floor(300 / T));
    canvas.width = canvas.height = cell * T;
    const context = canvas.getContext("2d");
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    rows.forEach((row, i) => {
      row.forEach((weight, j) => {
        const shade = Math.round(255 * (1 - Math.sqrt(weight)));
        context.fillStyle = `rgb(${shade}, ${shade}, 255)`;
        context.fillRect(j * cell, i * cell, cell, cell);
      });
    });
    context.strokeStyle = "#ff6d00";
    context.lineWidth = 2;
    context.strokeRect(1, selected * cell, canvas.width - 2, cell);
  }

  function update() {
    const rows = data.weights[Number(layer.value)][Number(head.value)];
    const i = Number(query.value);
    const weights = rows[i];
    $("attention-query-value").textContent = `${i} ${JSON.stringify(data.tokens[i])}`;
    spans.forEach((span, j) => {
      const weight = j <= i ? weights[j] : 0;
      span.dataset.weight = String(weight);
      span.style.backgroundColor = `rgba(63, 81, 181, ${Math.sqrt(weight).toFixed(3)})`;
      span.style.color = weight > 0.3 ? "#ffffff" : "";
      span.className = j === i ? "query" : "";
    });
    const top = weights.map((w, j) => [w, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 3);
    $("attention-summary").textContent = `query ${i} ${JSON.stringify(data.tokens[i])} reads most: ` +
      top.map(([w, j]) => `${j} ${JSON.stringify(data.tokens[j])} ${w.toFixed(3)}`).join(", ");
    drawMap(rows, i);
  }

  for (const control of [layer, head, query]) {
    control.addEventListener("input", update);
    control.addEventListener("change", update);
  }
  update();
})();

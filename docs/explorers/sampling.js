// The sampling explorer. The filters are solutions/generate.py's, step for step (stage 11's conventions):
//   temperature, then top-k, then top-p, then min-p, each on the previous one's output; a filter sets the logits it
//   removes to -Infinity and never separates equal values (ties at a boundary are all kept); temperature 0 is greedy:
//   all the mass on the first arg-max. Numbers are float64, as in the reference.
(function () {
  "use strict";
  const data = window.SAMPLING_DATA;
  const SHOWN = 20;  // rows shown unless "show every token" is ticked

  function softmax(logits) {  // -Infinity gets probability exactly 0
    const top = Math.max(...logits);
    const weights = logits.map((x) => Math.exp(x - top));
    let total = 0;
    for (const w of weights) total += w;
    return weights.map((w) => w / total);
  }

  function topK(logits, k) {  // keep the logits >= the k-th largest
    if (k >= logits.length) return logits.slice();
    const kth = logits.slice().sort((a, b) => b - a)[k - 1];
    return logits.map((x) => (x >= kth ? x : -Infinity));
  }

  function topP(logits, p) {  // keep every token at least as probable as the one where the sorted total first reaches p
    const probs = softmax(logits);
    const descending = probs.slice().sort((a, b) => b - a);
    let cumulative = 0, below = 0;
    for (const q of descending) {
      cumulative += q;
      if (cumulative < p) below += 1;
    }
    const threshold = descending[Math.min(below, logits.length - 1)];
    return logits.map((x, i) => (probs[i] >= threshold ? x : -Infinity));
  }

  function minP(logits, minimum) {  // keep p_i >= minimum * p_max
    const probs = softmax(logits);
    const cut = minimum * Math.max(...probs);
    return logits.map((x, i) => (probs[i] >= cut ? x : -Infinity));
  }

  function filterLogits(logits, settings) {
    const { temperature, topK: k, topP: p, minP: m } = settings;
    let filtered = temperature > 0 ? logits.map((x) => x / temperature) : logits.slice();
    if (k !== null) filtered = topK(filtered, k);
    if (p !== null) filtered = topP(filtered, p);
    if (m !== null) filtered = minP(filtered, m);
    if (temperature === 0) {  // greedy: the first arg-max of the raw logits
      let best = 0;
      logits.forEach((x, i) => { if (x > logits[best]) best = i; });
      return logits.map((_, i) => (i === best ? 0 : -Infinity));
    }
    return filtered;
  }

  function probabilities(logits, settings) { return softmax(filterLogits(logits, settings)); }

  function label(token) {
    return token === " " ? "␣" : token === "\n" ? "⏎" : token;
  }

  const $ = (id) => document.getElementById(id);
  const controls = {
    prompt: $("sampling-prompt"), temperature: $("sampling-temperature"), topK: $("sampling-top-k"),
    topP: $("sampling-top-p"), minP: $("sampling-min-p"), all: $("sampling-all"),
  };

  function settings() {
    const k = Number(controls.topK.value), p = Number(controls.topP.value), m = Number(controls.minP.value);
    return { temperature: Number(controls.temperature.value), topK: k > 0 ? k : null, topP: p < 1 ? p : null,
             minP: m > 0 ? m : null };
  }

  function update() {
    const chosen = settings();
    $("sampling-temperature-value").textContent = chosen.temperature.toFixed(2);
    $("sampling-top-k-value").textContent = chosen.topK === null ? "off" : String(chosen.topK);
    $("sampling-top-p-value").textContent = chosen.topP === null ? "off" : chosen.topP.toFixed(2);
    $("sampling-min-p-value").textContent = chosen.minP === null ? "off" : chosen.minP.toFixed(2);
    const logits = data.prompts[Number(controls.prompt.value)].logits;
    const raw = softmax(logits);
    const probs = probabilities(logits, chosen);
    const order = raw.map((_, i) => i).sort((a, b) => raw[b] - raw[a] || a - b);  // by the model's own probability
    const kept = probs.filter((q) => q > 0).length;
    let entropy = 0;
    for (const q of probs) if (q > 0) entropy -= q * Math.log(q);
    $("sampling-summary").textContent =
      `${kept} of ${probs.length} tokens kept; entropy ${entropy.toFixed(3)} nats ` +
      `(the model's own: ${raw.reduce((h, q) => (q > 0 ? h - q * Math.log(q) : h), 0).toFixed(3)})`;
    const table = $("sampling-bars");
    table.textContent = "";
    order.forEach((id, rank) => {
      const row = table.insertRow();
      row.dataset.token = String(id);
      row.dataset.probability = String(probs[id]);
      if (probs[id] === 0) row.className = "removed";
      if (rank >= SHOWN && !controls.all.checked) row.hidden = true;
      row.insertCell().textContent = JSON.stringify(label(data.vocab[id]));
      const bar = row.insertCell();
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * probs[id]).toFixed(2)}%`;
      bar.appendChild(fill);
      row.insertCell().textContent = probs[id] === 0 ? "removed" : probs[id].toFixed(4);
      row.insertCell().textContent = `model ${raw[id].toFixed(4)}`;
    });
  }

  data.prompts.forEach((prompt, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = JSON.stringify(prompt.text);
    controls.prompt.appendChild(option);
  });
  controls.topK.max = String(data.vocab.length);
  for (const control of Object.values(controls)) {
    control.addEventListener("input", update);
    control.addEventListener("change", update);
  }
  update();
  window.samplingExplorer = { filterLogits, probabilities, softmax };  // for the curious, in the console
})();

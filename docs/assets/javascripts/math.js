// Render the math of a page with KaTeX (served from the site itself). pymdownx.arithmatex (generic mode) wraps
// $...$ in <span class="arithmatex">\(...\)</span> and $$...$$ in <div class="arithmatex">\[...\]</div>.
(function () {
  function render(root) {
    for (const element of root.querySelectorAll(".arithmatex")) {
      const tex = element.textContent.trim();
      const display = tex.startsWith("\\[");
      katex.render(tex.slice(2, -2), element, { displayMode: display, throwOnError: false });
    }
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { render(document); });  // Material: runs once per page shown
  } else {
    document.addEventListener("DOMContentLoaded", function () { render(document); });
  }
})();

// MathJax 3 settings, read by the local MathJax (assets/javascripts/mathjax/tex-svg.js,
// copied into the site by docs_hooks/offline_assets.py) when it loads after this file.
// Only the maths that pymdownx.arithmatex marks up (class "arithmatex", delimited by
// \( \) and \[ \]) and the notebooks' Markdown cells ($ and $$, as Jupyter reads them)
// are typeset; a dollar sign anywhere else in the docs stays a dollar sign.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  svg: { fontCache: "global" },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};

/* ddpm-book: glue between the embedded ipywidgets 8 manager and this book. Loaded on every page
 * before the vendored require.js / embed-amd.js (see _config.yml, html_js_files priority).
 *
 * 1. Fonts. embed-amd.js locates its icon fonts relative to the AMD id of its bundle,
 *    "@jupyter-widgets/html-manager/dist/...", which RequireJS resolves against the page's own
 *    folder (404s). A global `require` config, read by require.js when it loads, maps that id
 *    to the vendored copy in _static/vendor/html-manager/.
 * 2. MathJax. The widget manager typesets labels with the MathJax 2 call
 *    `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`; Sphinx loads MathJax 3, which has
 *    no `Hub`, so every slider threw "Cannot read properties of undefined (reading 'Queue')".
 *    We add a `MathJax.Hub.Queue` that typesets the element with MathJax 3. Widgets render on
 *    the window's load event, after DOMContentLoaded has installed it.
 */
(function () {
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var paths = { "@jupyter-widgets/html-manager/dist": new URL("vendor/html-manager", here).href };
    if (typeof window.require === "function" && window.require.config) {
      window.require.config({ paths: paths });
    } else if (window.require === undefined) {
      window.require = { paths: paths };  // require.js reads this global as its configuration
    }
  }

  function installHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function (command) {
        var element = command && command[2];
        var M = window.MathJax;
        if (element && M && M.startup && M.startup.promise && M.typesetPromise) {
          M.startup.promise.then(function () { return M.typesetPromise([element]); })
            .catch(function (err) { console.warn("MathJax could not typeset a widget label", err); });
        }
      },
    };
  }
  installHub();
  document.addEventListener("DOMContentLoaded", installHub);
  window.addEventListener("load", installHub, true);
})();

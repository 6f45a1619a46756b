// Starts ReDoc on /redoc. A file of ours rather than an inline <script>: the page's CSP runs scripts only from this
// server's files.
"use strict";

(() => {
  // ReDoc's sidebar always shows Redocly's logo, an image on cdn.redoc.ly (no option turns it off). The CSP would
  // block it, but with an error; so that nothing is even attempted, that one image gets an empty source instead,
  // which fails at once and makes ReDoc drop the image (it hides its logo when the image does not load). React
  // sets an image's source twice, as an attribute and as the property: both are covered.
  const offHost = (value) => String(value).startsWith("https://cdn.redoc.ly/");
  const { setAttribute } = Element.prototype;
  HTMLImageElement.prototype.setAttribute = function (name, value) {
    setAttribute.call(this, name, name === "src" && offHost(value) ? "data:," : value);
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    ...src,
    set(value) {
      src.set.call(this, offHost(value) ? "data:," : value);
    },
  });

  const container = document.getElementById("redoc");
  // ReDoc adds its styles as <style> elements; the CSP lets in only those that carry this response's nonce, which
  // the page gives to this script (the browser hides it from the attribute, not from the property).
  const nonce = document.currentScript.nonce;
  const systemFonts = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  Redoc.init(
    container.dataset.openapiUrl,
    {
      nonce,
      // No web fonts: ReDoc's defaults name Roboto and Montserrat, which only a page that fetches them has.
      theme: {
        typography: {
          fontFamily: systemFonts,
          headings: { fontFamily: systemFonts },
          code: { fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace' },
        },
      },
    },
    container,
  );
})();

// Starts Swagger UI on /docs. A file of ours rather than an inline <script>: the page's CSP runs scripts only from
// this server's files.
"use strict";

(() => {
  const container = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: container.dataset.openapiUrl,
    domNode: container,
    // The plain layout (FastAPI's choice too): the standalone layout's top bar would add a URL box and the
    // online validator badge, an image from validator.swagger.io.
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null,
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
  });
})();

import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  // The portal serves the build under /admin/ (crates/portal/src/admin_page.rs).
  base: "/admin/",
  clearScreen: false,
  // The portal's CSP allows no inline script: no module-preload polyfill injected into the page.
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, modulePreload: { polyfill: false } },
  server: { proxy: { "/api": "http://127.0.0.1:8080" } },
});

/**
 * Builds the web console into server/dist/console, where populus-server serves it from
 * (server/src/service/console.ts): the TypeScript entry bundled by esbuild into one script with
 * its libraries (preact, connect-web, protobuf-es and the generated JobService code), beside the
 * page and its stylesheet. Nothing is loaded from elsewhere at run time, so the console works
 * offline. Run by `npm run build` after `tsc -b`, which compiles the generated code it imports.
 */
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const outDir = here("../dist/console/");

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const result = await build({
  entryPoints: [here("src/main.tsx")],
  outfile: `${outDir}console.js`,
  bundle: true,
  format: "esm",
  // Browsers of the last few years; the page uses fetch streams (Watch) and ES2022 classes.
  target: ["chrome109", "firefox115", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: true,
  sourcemap: "linked",
  legalComments: "eof",
  logLevel: "warning",
  metafile: true,
});
for (const file of ["index.html", "console.css", "favicon.svg"]) copyFileSync(here(`static/${file}`), `${outDir}${file}`);
const bytes = Object.entries(result.metafile.outputs)
  .filter(([name]) => name.endsWith(".js"))
  .reduce((sum, [, output]) => sum + output.bytes, 0);
process.stdout.write(`console built into ${outDir} (console.js ${(bytes / 1024).toFixed(0)} kB)\n`);

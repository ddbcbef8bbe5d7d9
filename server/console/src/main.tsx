/** The console's entry point: renders the app into the page (static/index.html). */
import { render } from "preact";
import { App } from "./app.js";

const root = document.getElementById("app");
if (root === null) throw new Error("the console's page has no #app element");
render(<App />, root);

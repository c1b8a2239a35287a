// The verify page's bundle check: the verifier module runs here, in the browser, against the
// RPC and contract typed in. Nothing is sent to this server.
import { formatResult, verifyBundle } from "/dashboard/assets/verifier/index.mjs";

const $ = (id) => document.getElementById(id);
const result = $("bundle-result");
let dropped = null;

const drop = $("drop");
drop.addEventListener("dragover", (e) => e.preventDefault());
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  dropped = e.dataTransfer.files[0] ?? null;
  drop.textContent = dropped ? `Dropped: ${dropped.name}` : "…or drop a bundle file here.";
});
$("bundle-file").addEventListener("change", () => (dropped = null));

$("check").addEventListener("click", async () => {
  const file = dropped ?? $("bundle-file").files[0];
  if (!file) {
    show("error", "Choose or drop a bundle file first.");
    return;
  }
  show("pending", "Checking…");
  const chainId = $("chain-id").value.trim();
  const outcome = await verifyBundle(await file.text(), {
    rpc: $("rpc").value.trim(),
    contract: $("contract").value.trim(),
    chainId: chainId === "" ? undefined : chainId,
  });
  show(outcome.status, formatResult(outcome).join("\n"), outcome.step);
});

function show(status, text, step) {
  result.className = `verdict ${status === "valid" ? "ok" : status === "pending" ? "warn" : "bad"}`;
  result.dataset.status = status;
  result.dataset.step = step ?? "";
  result.textContent = text;
}

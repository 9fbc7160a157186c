// Compiles TestUSDC.sol with the pinned npm `solc` (no network: the compiler is the package itself)
// and writes TestUSDC.json next to it. Run from the repository root: `node contracts/compile.mjs`.
// The artifact is checked in; tests/unit/local/test_chain_contract.py checks it matches the source.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = dirname(fileURLToPath(import.meta.url));
const contractName = "TestUSDC";
const sourceFile = `${contractName}.sol`;
const source = readFileSync(join(here, sourceFile), "utf8");
const evmVersion = "cancun";
const optimizer = { enabled: true, runs: 200 };

const input = {
  language: "Solidity",
  sources: { [sourceFile]: { content: source } },
  settings: {
    evmVersion,
    optimizer,
    // No metadata hash: the bytecode then depends on the source and settings only.
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const diagnostics = output.errors ?? [];
for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
if (diagnostics.some((d) => d.severity === "error")) process.exit(1);

const compiled = output.contracts[sourceFile][contractName];
const artifact = {
  contractName,
  abi: compiled.abi,
  bytecode: `0x${compiled.evm.bytecode.object}`,
  compiler: { version: solc.version(), evmVersion, optimizer },
  sourceSha256: createHash("sha256").update(readFileSync(join(here, sourceFile))).digest("hex"),
};
writeFileSync(join(here, `${contractName}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
console.log(`wrote contracts/${contractName}.json (solc ${artifact.compiler.version}, ${evmVersion})`);

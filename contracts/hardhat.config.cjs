// Hardhat serves only as the local JSON-RPC node (`hardhat node`, started by local_stack/chain.py).
// Nothing is compiled with it (contracts/compile.mjs uses the pinned npm `solc`), so it never
// downloads a compiler and runs offline.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // Base runs the Prague EIPs (Isthmus); pinned so a Hardhat upgrade cannot change the EVM.
      hardfork: "prague",
      // Like a real node: a reverted transaction is mined with status 0 and its hash is returned,
      // instead of Hardhat's default JSON-RPC error.
      throwOnTransactionFailures: false,
    },
  },
};

// A bench child that closes its IPC channel at once and lives on a moment (test/integration/bench-cleanup.test.ts).
process.disconnect();
setTimeout(() => undefined, 5000);

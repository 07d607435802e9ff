// Preloaded with `node --require` to simulate a uWebSockets.js binary that does not fit this
// Node build: loading any uws_*.node throws, as a real ABI mismatch does.
const Module = require('node:module');
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (/uws_.*\.node$/.test(request)) throw new Error('simulated: invalid ELF header');
  return load.call(this, request, parent, isMain);
};

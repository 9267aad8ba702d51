// Runs when `node-gyp rebuild` fails during `npm install`: the io_uring
// addon is optional (src/storage/uring-native.ts reports why it is missing
// and callers fall back to the portable file engine), so install succeeds.
'use strict';
console.warn(
  '[reflex] native io_uring addon was not built; the io_uring engine is disabled ' +
    '(needs a C compiler, python3 and Node headers). Falling back to the file engine.',
);

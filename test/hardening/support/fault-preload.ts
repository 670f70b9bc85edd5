// Preloaded into a `seglb run` child by the crash test (node --import): on SIGUSR2 it throws an
// exception nobody catches, or rejects a promise nobody handles (SEGLB_TEST_FAULT=exception|
// rejection). Lives in the test tree only, so production code has no hook to crash it.

process.on('SIGUSR2', () => {
  if (process.env.SEGLB_TEST_FAULT === 'rejection') {
    Promise.reject(new Error('rejection from the crash test'));
    return;
  }
  const err = new Error('boom from the crash test') as Error & { code?: string };
  err.code = 'ETESTCRASH';
  throw err;
});

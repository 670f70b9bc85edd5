// Sizes and paths of the benchmark's large-payload passes, shared by the backends (nginx config,
// node fallback), the load passes and their answer checks. No side effects: child processes import it.

/** Path the backends answer with `LARGE_RESPONSE_BYTES` bytes. */
export const LARGE_PATH = '/64k';
/** Body size of the large response, bytes (64 KiB). */
export const LARGE_RESPONSE_BYTES = 65_536;
/** Body size of the POST pass's requests, bytes (16 KiB). */
export const POST_BODY_BYTES = 16_384;

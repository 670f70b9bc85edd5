// Preloaded into seglb by the soak benchmark (`node --import bench/support/heap-probe.ts …`): on
// SIGUSR2 it writes process.memoryUsage() (bytes) as one marked JSON line to stderr, so the benchmark
// can sample the JS heap of a child without an admin listener. seglb itself does not use SIGUSR2.

process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  process.stderr.write(
    `\n@@seglb-bench-heap ${JSON.stringify({
      rss: m.rss,
      heapTotal: m.heapTotal,
      heapUsed: m.heapUsed,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
    })}\n`,
  );
});

// libtorch's generator and thread pool are process-wide: tests that seed it must not interleave.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

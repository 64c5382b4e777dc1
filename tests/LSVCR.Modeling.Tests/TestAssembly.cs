// libtorch's random generator and thread count are process-wide: tests that seed it and compare two draws (dropout
// masks, fused attention against its reference) must not interleave with other tests' draws. The suite takes
// seconds, so it simply runs serially.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

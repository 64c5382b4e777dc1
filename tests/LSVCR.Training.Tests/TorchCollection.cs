namespace LSVCR.Training.Tests;

/// <summary>
/// Tests that train run one at a time: libtorch's random generator is process-wide, so two trainings in parallel would
/// interleave their draws and break the reproducibility these tests assert. One intra-op thread as well: the test
/// machine is small and shared, and oversubscribed OpenMP threads spin instead of working.
/// </summary>
[CollectionDefinition(Name)]
public sealed class TorchCollection : ICollectionFixture<TorchCollection.Setup>
{
    public const string Name = "torch";

    public sealed class Setup
    {
        public Setup() => TorchSharp.torch.set_num_threads(1);
    }
}

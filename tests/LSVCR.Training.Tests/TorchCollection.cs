namespace LSVCR.Training.Tests;

/// <summary>
/// Tests that train run one at a time with one intra-op thread: the test machine is small and shared, and
/// oversubscribed OpenMP threads spin instead of working. (Runs draw from their own generators, so running them
/// together would not change their results: FineTunerTests checks that on purpose.)
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

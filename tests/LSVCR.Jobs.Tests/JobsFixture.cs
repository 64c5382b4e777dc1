using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Training;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Jobs.Tests;

/// <summary>
/// A local artifact store holding a tiny synthetic dataset and seeded random embeddings as published sets, the jobs
/// resolved from DI over it, and one fine-tuned checkpoint shared by the tests that only read it. Tests that run the
/// model share one collection: libtorch's generator is process-wide (the jobs refuse to run side by side).
/// </summary>
public sealed class JobsFixture : IAsyncLifetime
{
    public string Root { get; } = Directory.CreateTempSubdirectory("lsvcr-jobs-test-").FullName;
    public ServiceProvider Services { get; private set; } = null!;
    public IArtifactStore Store => Services.GetRequiredService<IArtifactStore>();
    public LsvcrDataset Data { get; } = SyntheticDataset.Generate(new SynthOptions { Users = 40, Seed = 3, Topics = 4, MinLikes = 5, MaxLikes = 8, Videos = 64 });
    public ArtifactSetReference Dataset { get; private set; } = null!;
    public ArtifactSetReference Embeddings { get; private set; } = null!;
    public string WorkDirectory => Path.Combine(Root, "work");

    private Lazy<Task<FineTuningJobResult>> trained = null!;
    public Task<FineTuningJobResult> Trained => trained.Value;

    public static TrainOptions Training => new() { Epochs = 2, BatchSize = 64, Seed = 5, Threads = 1 };

    public static ServiceProvider Build(Dictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        return new ServiceCollection().AddLogging().AddLsvcrJobs(configuration).BuildServiceProvider();
    }

    public async Task InitializeAsync()
    {
        TorchSharp.torch.set_num_threads(1);
        Services = Build(new()
        {
            ["ConnectionStrings:artifacts"] = Path.Combine(Root, "store"),
            ["Jobs:WorkDirectory"] = WorkDirectory,
            ["Jobs:FineTuning:Training:Epochs"] = "2",
            ["Jobs:FineTuning:Training:BatchSize"] = "64",
            ["Jobs:FineTuning:Training:Seed"] = "5",
            ["Jobs:FineTuning:Training:Threads"] = "1",
        });
        var dataDir = Path.Combine(Root, "dataset");
        ReferenceLayout.Write(Data, dataDir);
        Dataset = await Store.PublishDirectoryAsync("datasets/tiny", "dataset", dataDir);
        Embeddings = await PublishEmbeddingsAsync("embeddings/tiny/random", seed: 1);
        trained = new(() => Services.GetRequiredService<FineTuningJobService>()
            .RunAsync(new FineTuningJobRequest(Dataset, Embeddings, TaskKind.Rec, "runs/shared/rec")));
    }

    /// <summary>Seeded random unit-ish vectors for every video and comment (row 0 = pad), published as an embeddings set.</summary>
    public async Task<ArtifactSetReference> PublishEmbeddingsAsync(string set, int seed, int dim = 32)
    {
        var rng = new Random(seed);
        FloatMatrix Random(int rows)
        {
            var data = new float[rows * dim];
            for (int i = dim; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1) / MathF.Sqrt(dim);
            return new FloatMatrix(data, rows, dim);
        }
        var dir = Path.Combine(Root, "emb-" + seed);
        Directory.CreateDirectory(dir);
        Npy.Write(Path.Combine(dir, TextEmbeddings.PhotoFile), Random(Data.Catalog.PhotoCount));
        Npy.Write(Path.Combine(dir, TextEmbeddings.CommentFile), Random(Data.Catalog.CommentCount));
        return await Store.PublishDirectoryAsync(set, "embeddings", dir);
    }

    public async Task DisposeAsync()
    {
        await Services.DisposeAsync();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class JobsCollection : ICollectionFixture<JobsFixture>
{
    public const string Name = "jobs";
}

/// <summary>Calls back on the reporting thread (Progress&lt;T&gt; would post to the thread pool, after the fact).</summary>
public sealed class SyncProgress(Action<JobProgress> report) : IProgress<JobProgress>
{
    public void Report(JobProgress value) => report(value);
}

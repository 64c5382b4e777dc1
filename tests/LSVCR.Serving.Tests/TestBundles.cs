using LSVCR.Data;
using LSVCR.Modeling;
using LSVCR.Serving.Export;
using LSVCR.Training;
using static TorchSharp.torch;

namespace LSVCR.Serving.Tests;

/// <summary>A small dataset, random text embeddings and randomly initialised Rec / CommRank checkpoints (every
/// weight perturbed, so biases, norms and gate are exercised), exported as a serving bundle.</summary>
public sealed class TestBundle
{
    public const int TextDim = 32;

    public required string Root { get; init; }
    public required string DataDir { get; init; }
    public required string EmbeddingsDir { get; init; }
    public required string RecDir { get; init; }
    public required string CommRankDir { get; init; }
    public required string BundleDir { get; init; }
    public required BundleManifest Manifest { get; init; }
    public required Catalog Catalog { get; init; }

    private static readonly object Gate = new();

    /// <summary>Creates the data (shared by seed) and a bundle at <paramref name="bundleDir"/>.</summary>
    public static TestBundle Create(string root, string bundleDir, int modelSeed)
    {
        lock (Gate) // TorchSharp's global generator
        {
            var dataDir = Path.Combine(root, "data");
            var embDir = Path.Combine(root, "embeddings");
            if (!File.Exists(Path.Combine(embDir, TextEmbeddings.CommentFile)))
            {
                var dataset = SyntheticDataset.Generate(new SynthOptions { Users = 80, Topics = 4, Videos = 64, CommentsPerVideo = 6, Seed = 5 });
                ReferenceLayout.Write(dataset, dataDir);
                var rng = new Random(11);
                FloatMatrix Random(int rows) => new([.. Enumerable.Range(0, rows * TextDim).Select(_ => (float)(rng.NextDouble() * 2 - 1))], rows, TextDim);
                Npy.Write(Path.Combine(embDir, TextEmbeddings.PhotoFile), Random(dataset.Catalog.PhotoCount));
                Npy.Write(Path.Combine(embDir, TextEmbeddings.CommentFile), Random(dataset.Catalog.CommentCount));
            }
            var catalog = ReferenceLayout.ReadCatalog(dataDir);
            var (photos, comments) = TextEmbeddings.Load(embDir, catalog);
            var runs = Path.Combine(root, $"run-{modelSeed}");
            var recDir = Path.Combine(runs, "rec", "full");
            var crDir = Path.Combine(runs, "commrank", "full");
            manual_seed(modelSeed);
            SaveRandom(recDir, "rec", catalog, photos, comments);
            SaveRandom(crDir, "commrank", catalog, photos, comments);
            var manifest = BundleExporter.Export(new ExportOptions { Rec = recDir, CommRank = crDir, Data = dataDir, Embeddings = embDir, Out = bundleDir, TrainingRun = $"test-run-{modelSeed}" });
            return new TestBundle
            {
                Root = root, DataDir = dataDir, EmbeddingsDir = embDir, RecDir = recDir, CommRankDir = crDir,
                BundleDir = bundleDir, Manifest = manifest, Catalog = catalog,
            };
        }
    }

    private static void SaveRandom(string dir, string task, Catalog catalog, FloatMatrix photos, FloatMatrix comments)
    {
        var config = new RecComConfig { PhotoCount = catalog.PhotoCount, CommentCount = catalog.CommentCount, TextDim = TextDim };
        using var p = tensor(photos.Data, [photos.Rows, photos.Cols]);
        using var c = tensor(comments.Data, [comments.Rows, comments.Cols]);
        using var model = new RecCom(config, p, c);
        using (no_grad())
            foreach (var (_, param) in model.named_parameters())
                param.add_(randn_like(param).mul_(0.1f));
        ModelStore.Save(model, new ModelInfo { Task = task, Variant = Variants.Full, Config = config, Epoch = 1, ValNdcg5 = 0.5 }, dir);
    }

    /// <summary>The checkpoint as the TorchSharp model, for parity.</summary>
    public RecCom LoadTorch(string dir)
    {
        var (photos, comments) = TextEmbeddings.Load(EmbeddingsDir, Catalog);
        return ModelStore.Load(dir, photos, comments).Model;
    }
}

public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lsvcr-serving-" + Guid.NewGuid().ToString("N"));
    public TempDir() => Directory.CreateDirectory(Path);
    public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
}

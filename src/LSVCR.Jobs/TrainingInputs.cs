using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Training;

namespace LSVCR.Jobs;

/// <summary>Opens the dataset and embeddings sets a training or evaluation step reads, with the same checks as the CLI.</summary>
internal static class TrainingInputs
{
    public static async Task<(LsvcrDataset Data, FloatMatrix Photos, FloatMatrix Comments)> LoadAsync(IArtifactStore store,
        ArtifactSetReference dataset, ArtifactSetReference embeddings, IProgress<JobProgress> progress, CancellationToken ct)
    {
        var datasetSet = await store.OpenAsync(dataset, ct);
        var embeddingsSet = await store.OpenAsync(embeddings, ct);
        var data = ReferenceLayout.Read(datasetSet.Directory, progress);
        var (photos, comments) = TextEmbeddings.Load(embeddingsSet.Directory, data.Catalog);
        return (data, photos, comments);
    }

    /// <summary>Options as they enter a step key: settings that do not change the result (threads, prefetch) are left out.</summary>
    public static object KeyOf(TrainOptions t) => t with { Threads = null, Prefetch = 1, Init = null };

    public static string Invariant(double value) => value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
    public static string Invariant(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

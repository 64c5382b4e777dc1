namespace LSVCR.Data;

/// <summary>Reads and writes the authors' reference dataset folder (MODEL.md §1.1).</summary>
public static class ReferenceLayout
{
    /// <summary>Loads the whole dataset; throws <see cref="DatasetValidationException"/> listing every problem.</summary>
    public static LsvcrDataset Read(string dir, IProgress<JobProgress>? progress = null) =>
        throw new NotImplementedException();

    /// <summary>Loads only the items (id lists, photo.json, comment.json) — what embedding needs.</summary>
    public static Catalog ReadCatalog(string dir, IProgress<JobProgress>? progress = null) =>
        throw new NotImplementedException();

    public static void Write(LsvcrDataset dataset, string dir, IProgress<JobProgress>? progress = null) =>
        throw new NotImplementedException();
}

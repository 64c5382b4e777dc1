using LSVCR.Data;

namespace LSVCR.Embeddings.Tests;

/// <summary>A scratch directory deleted after the test.</summary>
public sealed class TestDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lsvcr-embed-tests", Guid.NewGuid().ToString("N"));

    public TestDir() => Directory.CreateDirectory(Path);

    public string Sub(string name)
    {
        var dir = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Reports on the calling thread (unlike Progress&lt;T&gt;, which posts), so a test can react at an exact point.</summary>
public sealed class SyncProgress(Action<JobProgress> handler) : IProgress<JobProgress>
{
    public void Report(JobProgress value) => handler(value);
}

public static class Catalogs
{
    /// <summary>A catalogue with one comment list per video; texts are given without the pad entry.</summary>
    public static Catalog Make(string[] titles, string[][] commentsPerVideo)
    {
        var photoIds = new[] { Catalog.PadId }.Concat(titles.Select((_, i) => $"p{i + 1}")).ToArray();
        var commentTexts = new List<string> { "" };
        var offsets = new List<int> { 0, 0 };
        var photoComments = new List<int>();
        foreach (var list in commentsPerVideo)
        {
            foreach (var text in list)
            {
                photoComments.Add(commentTexts.Count);
                commentTexts.Add(text);
            }
            offsets.Add(photoComments.Count);
        }
        while (offsets.Count < photoIds.Length + 1) offsets.Add(photoComments.Count);
        var commentIds = commentTexts.Select((_, i) => i == 0 ? Catalog.PadId : $"c{i}").ToArray();
        return new Catalog(photoIds, ["", .. titles], offsets.ToArray(), photoComments.ToArray(), commentIds, commentTexts.ToArray());
    }
}

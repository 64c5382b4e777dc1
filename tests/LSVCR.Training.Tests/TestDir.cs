namespace LSVCR.Training.Tests;

/// <summary>A scratch directory deleted after the test.</summary>
public sealed class TestDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lsvcr-training-tests", Guid.NewGuid().ToString("N"));

    public TestDir() => Directory.CreateDirectory(Path);

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Reports synchronously on the reporting thread (Progress&lt;T&gt; would post to the thread pool).</summary>
public sealed class SyncProgress(Action<JobProgress> handler) : IProgress<JobProgress>
{
    public void Report(JobProgress value) => handler(value);
}

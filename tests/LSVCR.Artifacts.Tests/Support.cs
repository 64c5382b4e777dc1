using System.Diagnostics;
using Azure.Core;
using Azure.Core.Pipeline;
using LSVCR.TestServers;

namespace LSVCR.Artifacts.Tests;

/// <summary>A temporary folder removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("lsvcr-artifacts-test-").FullName;
    public string Sub(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>One real Azurite for every blob test (started once, killed at the end).</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    public AzuriteServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await AzuriteServer.StartAsync();
    public async Task DisposeAsync() => await Server.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "azurite";
}

/// <summary>Counts the HTTP requests a blob client sends, by method (to prove a cache hit sends none).</summary>
public sealed class RequestCounter : HttpPipelineSynchronousPolicy
{
    private int gets, total;
    public int Gets => gets;
    public int Total => total;
    public override void OnSendingRequest(HttpMessage message)
    {
        Interlocked.Increment(ref total);
        if (message.Request.Method == RequestMethod.Get) Interlocked.Increment(ref gets);
    }
    public void Reset() { gets = 0; total = 0; }
}

/// <summary>Deterministic pseudo-random bytes (any size) without holding them all.</summary>
public sealed class PatternStream(long length, int seed, long throwAfter = -1) : Stream
{
    private long position;
    public override int Read(byte[] buffer, int offset, int count)
    {
        if (throwAfter >= 0 && position >= throwAfter) throw new IOException("source failed mid-file (test)");
        int n = (int)Math.Min(count, length - position);
        if (throwAfter >= 0) n = (int)Math.Min(n, Math.Max(1, throwAfter - position));
        for (int i = 0; i < n; i++) buffer[offset + i] = ByteAt(position + i, seed);
        position += n;
        return n;
    }
    public static byte ByteAt(long i, int seed) => (byte)((i * 2654435761L + seed * 40503L) >> 7);
    public static byte[] Bytes(int length, int seed) { var b = new byte[length]; new PatternStream(length, seed).ReadExactly(b); return b; }
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => length;
    public override long Position { get => position; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

public static class KillableWriter
{
    /// <summary>Starts the writer process and waits until it has stalled inside its large file.</summary>
    public static async Task<Process> StartAndWaitForStallAsync(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "LSVCR.Artifacts.KillableWriter.dll");
        Assert.True(File.Exists(dll), $"{dll} missing: the test project must reference LSVCR.Artifacts.KillableWriter");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        while (true)
        {
            var line = await process.StandardOutput.ReadLineAsync(timeout.Token);
            if (line == "STALLED") return process;
            if (line is null)
                throw new InvalidOperationException($"writer exited ({process.ExitCode}) before stalling: {await stderr}");
        }
    }

    /// <summary>SIGKILL: no finally blocks, no dispose, no chance to clean up.</summary>
    public static void KillHard(Process process)
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit(30_000);
        Assert.True(process.HasExited);
        Assert.Equal(137, process.ExitCode);  // 128 + SIGKILL
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LSVCR.TestServers;

/// <summary>
/// A real server process the integration tests start for themselves: it listens on free loopback ports, keeps its
/// data in a private temporary folder, and is killed (with its children) and removed on dispose. A missing program
/// is a failure with the install command, never a skipped test.
/// </summary>
public abstract class LocalServer : IAsyncDisposable
{
    private Process? process;
    private readonly List<string> output = [];

    protected LocalServer(string name)
    {
        DataDirectory = Path.Combine(Path.GetTempPath(), $"lsvcr-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(DataDirectory);
    }

    public string DataDirectory { get; }

    /// <summary>The last lines the server printed (for failure messages).</summary>
    public string RecentOutput { get { lock (output) return string.Join('\n', output.TakeLast(40)); } }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The full path of <paramref name="program"/> on PATH (or in the extra folders), or a clear failure.</summary>
    protected static string Require(string program, string install, params string[] extraFolders)
    {
        var folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(extraFolders);
        foreach (var folder in folders.Where(f => f.Length > 0))
        {
            var candidate = Path.Combine(folder, program);
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException($"{program} is not installed; this test needs the real server ({install}; .ci/run installs it).");
    }

    protected void StartProcess(string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {fileName}");
        void Keep(string? line) { if (line is null) return; lock (output) { output.Add(line); if (output.Count > 400) output.RemoveAt(0); } }
        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Waits until every port accepts a TCP connection, failing early if the process exits.</summary>
    protected async Task WaitForPortsAsync(TimeSpan timeout, params int[] ports)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var port in ports)
        {
            while (true)
            {
                if (process is { HasExited: true })
                    throw new InvalidOperationException($"{GetType().Name} exited with code {process.ExitCode} before port {port} opened:\n{RecentOutput}");
                try
                {
                    using var client = new TcpClient();
                    await client.ConnectAsync(IPAddress.Loopback, port);
                    break;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(200);
                }
                catch (SocketException)
                {
                    throw new TimeoutException($"{GetType().Name} did not open port {port} within {timeout.TotalSeconds:F0} s:\n{RecentOutput}");
                }
            }
        }
    }

    /// <summary>Kills the server (SIGKILL, with its children) without removing its data: a crash, for fault tests.</summary>
    public void Kill()
    {
        if (process is { HasExited: false }) process.Kill(entireProcessTree: true);
        process?.WaitForExit(10_000);
    }

    public virtual ValueTask DisposeAsync()
    {
        try { Kill(); } catch (InvalidOperationException) { }
        process?.Dispose();
        try { Directory.Delete(DataDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}

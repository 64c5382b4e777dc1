using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using LSVCR.LoadTests;

// Load runs against the serving service on loopback (docs/serving.md, "Load runs"). Not run in CI.
//   prepare --bench DIR [--videos 100000] [--comments-per-video 10] [--users 20000] [--dim 64]
//   export --bench DIR --name a|b --out DIR   (re-exports a prepared bench's checkpoints, e.g. after an exporter change)
//   run --bench DIR [--scenarios 1,2,3,4,5,6,7] [--rate 2000] [--comments-rate 1000] [--duration 20] [--url URL] [--report DIR]
var opts = Args.Parse(args);
var inv = CultureInfo.InvariantCulture;
switch (opts.Command)
{
    case "prepare":
        BenchPrepare.Run(opts.Get("bench"), opts.Int("videos", 100_000), opts.Int("comments-per-video", 10), opts.Int("users", 20_000), opts.Int("dim", 64));
        return 0;
    case "export":
        BenchPrepare.Export(opts.Get("bench"), opts.Get("name"), opts.Get("out"));
        return 0;
    case "engine":
        EngineBench.Run(opts.Get("bundle"), opts.Int("batch", 32), opts.Int("iterations", 20), opts.Int("threads", 1), opts.Maybe("onnx-profile"));
        return 0;
    case "run":
        return await LoadRuns.RunAsync(opts);
    case "bodies":
        File.WriteAllLines(opts.Maybe("out") ?? "bodies.jsonl", new Bodies(Path.Combine(opts.Get("bench"), "bundle-a"), 2000).Videos.Select(System.Text.Encoding.UTF8.GetString));
        return 0;
    default:
        Console.Error.WriteLine("usage: LSVCR.LoadTests prepare --bench DIR … | run --bench DIR [--scenarios 1,…,7] [--rate N] [--duration S] [--url URL]");
        return 2;
}

internal sealed class Args(string command, Dictionary<string, string> values)
{
    public string Command { get; } = command;
    public static Args Parse(string[] a)
    {
        var d = new Dictionary<string, string>();
        for (int i = 1; i < a.Length; i++)
            if (a[i].StartsWith("--")) d[a[i][2..]] = i + 1 < a.Length && !a[i + 1].StartsWith("--") ? a[++i] : "true";
        return new Args(a.Length > 0 ? a[0] : "", d);
    }
    public string Get(string k) => values.TryGetValue(k, out var v) ? v : throw new ArgumentException($"--{k} is required");
    public string? Maybe(string k) => values.GetValueOrDefault(k);
    public int Int(string k, int d) => values.TryGetValue(k, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : d;
    public double Double(string k, double d) => values.TryGetValue(k, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : d;
}

internal static class LoadRuns
{
    public static async Task<int> RunAsync(Args o)
    {
        var bench = Path.GetFullPath(o.Get("bench"));
        var scenarios = (o.Maybe("scenarios") ?? "1,2,3,4,5,6,7").Split(',').Select(int.Parse).ToHashSet();
        var rate = o.Double("rate", 2000);
        var commentsRate = o.Double("comments-rate", 1000);
        var during = TimeSpan.FromSeconds(o.Double("duration", 20));
        var report = o.Maybe("report") ?? Path.Combine(bench, "reports", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        var root = Path.Combine(bench, "root-" + DateTime.UtcNow.ToString("HHmmss", CultureInfo.InvariantCulture));
        if (o.Maybe("url") is null) Copy(Path.Combine(bench, "bundle-a"), Path.Combine(root, "a"));
        using var service = o.Maybe("url") is null ? ServiceProcess.Start(root, o) : null;
        var url = o.Maybe("url") ?? service!.Url;
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
        { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(30) };
        var ready = Stopwatch.StartNew();
        while ((await Try(() => http.GetAsync("/health")))?.IsSuccessStatusCode != true)
        {
            if (ready.Elapsed > TimeSpan.FromMinutes(5)) throw new TimeoutException("service not ready after 5 min");
            await Task.Delay(200);
        }
        var model = JsonNode.Parse(await http.GetStringAsync("/v1/model"))!;
        var notes = new List<string> { $"service ready after {ready.Elapsed.TotalSeconds:F1} s; bundle load + warm-up {(double)model["load_seconds"]!:F2} s; " +
            $"{(int)model["videos"]!:N0} videos, {(int)model["comments"]!:N0} comments; RSS {service?.RssMb():F0} MB" };
        Console.WriteLine(notes[0]);
        var bodies = new Bodies(Path.Combine(bench, "bundle-a"), 2000);
        if (o.Maybe("url") is not null && scenarios.Contains(5)) throw new ArgumentException("scenario 5 publishes into the bundle root of the service the runner starts; run it without --url");
        var results = new List<ScenarioStats>();

        async Task<ScenarioStats> Run(Scenario s)
        {
            Console.WriteLine($"running {s.Name} …");
            var load0 = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            var cpu0 = service?.CpuSeconds() ?? double.NaN;
            var stats = await ScenarioRunner.RunAsync(s);
            // The service's CPU time per answered request: the figure that the neighbours' load on the shared cores
            // does not change (much), unlike requests/s.
            var cpu = (service?.CpuSeconds() ?? double.NaN) - cpu0;
            var ok = stats.StatusCodes.GetValueOrDefault(200);
            stats.Notes.Add($"service CPU {cpu:F2} s for {ok:N0} answered (200) requests: {cpu * 1000 / Math.Max(1, ok):F3} ms per request; load average {load0} → {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
            Console.WriteLine($"  {stats.Notes[^1]}");
            Console.WriteLine($"  {stats.Rps:F0} rps ok, p50 {stats.Percentile(50):F2} ms, p99 {stats.Percentile(99):F2} ms, fail {stats.FailPercent:F2} %, codes {string.Join(" ", stats.StatusCodes.Select(kv => $"{kv.Key}:{kv.Value}"))}");
            foreach (var (t, passed, actual) in stats.Checked) Console.WriteLine($"  {(passed ? "PASS" : "FAIL")} {t.Text} (actual {actual:F2})");
            results.Add(stats);
            return stats;
        }

        var videos = Post(http, "/v1/recommendations/videos", bodies.Videos);
        var comments = Post(http, "/v1/recommendations/comments", bodies.Comments);
        // Warm-up (not reported): JIT tiers, connection pool, ONNX Runtime arenas.
        var warm = await ScenarioRunner.RunAsync(Scenario.Create("warm-up", ctx => ctx.InvocationNumber % 5 == 0 ? comments(ctx) : videos(ctx))
            .WithLoadSimulations(Simulation.RampingInject(o.Double("warmup-rate", 500), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(o.Double("warmup", 8)))));
        Console.WriteLine($"warm-up: {warm.Requests} requests, p99 {warm.Percentile(99):F1} ms");
        if (scenarios.Contains(1))
            await Run(Scenario.Create($"1 videos top-k, Inject {rate}/s", videos)
                .WithLoadSimulations(Simulation.Inject(rate, TimeSpan.FromSeconds(1), during))
                .WithThresholds("p99 < 10ms", $"RPS >= {rate * 0.98:F0}", "fail % < 0.1"));
        if (scenarios.Contains(2))
            await Run(Scenario.Create($"2 comment ranking, Inject {commentsRate}/s", comments)
                .WithLoadSimulations(Simulation.Inject(commentsRate, TimeSpan.FromSeconds(1), during))
                .WithThresholds("p99 < 10ms", "fail % < 0.1"));
        if (scenarios.Contains(3))
            await Run(Scenario.Create($"3 mix 80 % videos / 20 % comments, Inject {rate}/s", ctx => ctx.Random.NextDouble() < 0.8 ? videos(ctx) : comments(ctx))
                .WithLoadSimulations(Simulation.Inject(rate, TimeSpan.FromSeconds(1), during))
                .WithThresholds("p99 < 10ms", "fail % < 0.1"));
        if (scenarios.Contains(8))
            await Run(Scenario.Create($"8 videos top-k, KeepConstant {o.Int("copies", 32)} (wrk's closed loop, for the cross-check)", videos)
                .WithLoadSimulations(Simulation.KeepConstant(o.Int("copies", 32), during))
                .WithThresholds("fail % < 0.1"));
        var best = rate;
        if (scenarios.Contains(4))
        {
            best = 0;
            var step = o.Double("ramp-step", 250);
            var stepDuring = TimeSpan.FromSeconds(o.Double("ramp-duration", 10));
            for (var r = o.Double("ramp-from", 1000); r <= o.Double("ramp-to", 6000); r += step)
            {
                var s = await Run(Scenario.Create($"4 ramp: videos at {r}/s", videos)
                    .WithLoadSimulations(Simulation.RampingInject(r, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2)), Simulation.Inject(r, TimeSpan.FromSeconds(1), stepDuring))
                    .WithThresholds("p99 <= 10ms", "fail % < 0.1"));
                if (!s.Checked.All(c => c.Passed)) break;
                best = r;
            }
            notes.Add($"scenario 4: highest rate meeting p99 <= 10 ms and fail % < 0.1: {best}/s");
            Console.WriteLine(notes[^1]);
            if (best == 0) best = rate / 2;
        }
        if (scenarios.Contains(5))
        {
            var swap = Scenario.Create($"5 model swap during Inject {best}/s", videos)
                .WithLoadSimulations(Simulation.Inject(best, TimeSpan.FromSeconds(1), during))
                .WithThresholds("fail % == 0", "5xx == 0") with
            {
                Background = async ct =>
                {
                    await Task.Delay(during / 3, CancellationToken.None);
                    var t0 = Stopwatch.StartNew();
                    var staging = Path.Combine(root, ".b");
                    Copy(Path.Combine(bench, "bundle-b"), staging);
                    Directory.Move(staging, Path.Combine(root, "b"));
                    var target = BundleVersion(Path.Combine(bench, "bundle-b"));
                    while (t0.Elapsed < TimeSpan.FromMinutes(2))
                    {
                        var m = JsonNode.Parse(await http.GetStringAsync("/v1/model"))!;
                        if ((string?)m["model_version"] == target)
                            return $"swap: bundle b ({target}) live {t0.Elapsed.TotalSeconds:F1} s after publishing (load + warm-up {(double)m["load_seconds"]!:F2} s)";
                        await Task.Delay(100, CancellationToken.None);
                    }
                    return "swap: bundle b was NOT live within 2 min";
                },
            };
            await Run(swap);
        }
        if (scenarios.Contains(6))
            await Run(Scenario.Create($"6 overload: videos at 2 × {best}/s", videos)
                .WithLoadSimulations(Simulation.Inject(2 * best, TimeSpan.FromSeconds(1), during))
                .WithThresholds("5xx == 0", "429 > 0", "p99 < 50ms"));
        if (scenarios.Contains(7))
        {
            var malformed = Scenario.Create("7 10,000 malformed requests", async ctx =>
            {
                var body = Bodies.Malformed[ctx.InvocationNumber % Bodies.Malformed.Length];
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                var path = ctx.InvocationNumber % 2 == 0 ? "/v1/recommendations/videos" : "/v1/recommendations/comments";
                using var r = await http.PostAsync(path, content, ctx.CancellationToken);
                var text = await r.Content.ReadAsStringAsync(ctx.CancellationToken);
                var code = (int)r.StatusCode;
                return code is >= 400 and < 500 && r.Content.Headers.ContentType?.MediaType == "application/problem+json" && text.Contains("\"status\"")
                    ? Response.Ok(code) : Response.Fail(code, code >= 500 ? "5xx" : "not a problem-details 4xx");
            })
            .WithLoadSimulations(Simulation.Inject(1000, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10)))
            .WithThresholds("4xx % == 100", "5xx == 0", "fail % == 0") with
            {
                After = async () => $"after: /health {(int)(await http.GetAsync("/health")).StatusCode}, videos {(int)(await http.PostAsync("/v1/recommendations/videos", new ByteArrayContent(bodies.Videos[0]) { Headers = { ContentType = new("application/json") } })).StatusCode}",
            };
            await Run(malformed);
        }
        notes.Add($"service RSS after the runs: {service?.RssMb():F0} MB");
        var title = $"LSVCR serving load runs ({DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {url})";
        var all = results.ToList();
        all.Insert(0, new ScenarioStats("setup") { Notes = { } });
        all[0].Notes.AddRange(notes);
        Reports.Write(report, title, all);
        Console.WriteLine($"reports: {report}");
        return results.All(r => r.Checked.All(c => c.Passed)) ? 0 : 1;
    }

    private static Func<ScenarioContext, Task<Response>> Post(HttpClient http, string path, byte[][] bodies) => async ctx =>
    {
        using var content = new ByteArrayContent(bodies[ctx.InvocationNumber % bodies.Length]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var r = await http.PostAsync(path, content, ctx.CancellationToken);
        await r.Content.ReadAsByteArrayAsync(ctx.CancellationToken);
        return r.IsSuccessStatusCode ? Response.Ok((int)r.StatusCode) : Response.Fail((int)r.StatusCode);
    };

    private static async Task<HttpResponseMessage?> Try(Func<Task<HttpResponseMessage>> f)
    {
        try { return await f(); } catch (HttpRequestException) { return null; }
    }

    private static string BundleVersion(string dir) => (string)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "manifest.json")))!["model_version"]!;

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }
}

/// <summary>The service as its own process on a loopback port (the runner only ends the process it started).</summary>
internal sealed class ServiceProcess : IDisposable
{
    private readonly Process _process;
    public string Url { get; }

    private ServiceProcess(Process p, string url) { _process = p; Url = url; }

    public static ServiceProcess Start(string bundleRoot, Args o)
    {
        var repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "LSVCR.sln"))) repo = Path.GetDirectoryName(repo) ?? throw new InvalidOperationException("repository root not found");
        var dll = o.Maybe("service-dll") ?? Path.Combine(repo, "services", "LSVCR.Serving.Api", "bin", "Release", "net10.0", "LSVCR.Serving.Api.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll}: build it first (dotnet build services/LSVCR.Serving.Api -c Release)");
        var port = o.Int("port", FreePort());
        var url = $"http://127.0.0.1:{port}";
        var psi = new ProcessStartInfo("dotnet", [dll]) { UseShellExecute = false, RedirectStandardOutput = false };
        psi.Environment["ASPNETCORE_URLS"] = url;
        psi.Environment["Serving__BundleRoot"] = bundleRoot;
        psi.Environment["Serving__PollInterval"] = "00:00:01";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        psi.Environment["Logging__LogLevel__LSVCR"] = "Information";
        foreach (var (arg, key) in new[] { ("max-batch", "MaxBatchSize"), ("delay", "MaxBatchDelay"), ("queue", "QueueCapacity"), ("workers", "Workers"), ("threads", "IntraOpThreads") })
            if (o.Maybe(arg) is { } v) psi.Environment[$"Serving__{key}"] = v;
        var p = Process.Start(psi) ?? throw new InvalidOperationException("service did not start");
        return new ServiceProcess(p, url);
    }

    /// <summary>utime + stime of the service process (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).</summary>
    public double CpuSeconds()
    {
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    public double RssMb()
    {
        try
        {
            var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmRSS:"));
            return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        }
        catch (IOException) { return double.NaN; }
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: false);
        _process.WaitForExit(10_000);
        _process.Dispose();
    }
}

/// <summary>`engine`: times the engine's batch calls in-process (no HTTP): encode + scores, and the top-k.</summary>
internal static class EngineBench
{
    public static void Run(string bundle, int batch, int iterations, int threads, string? onnxProfile)
    {
        var sw = Stopwatch.StartNew();
        using var model = LSVCR.Serving.ServingModel.Load(bundle, new LSVCR.Serving.ServingOptions { IntraOpThreads = threads, Workers = 1, OnnxProfilePrefix = onnxProfile });
        Console.WriteLine($"load + warm-up {sw.Elapsed.TotalSeconds:F2} s");
        var rng = new Random(1);
        var users = Enumerable.Range(0, batch).Select(_ => new LSVCR.Serving.UserHistory(
            [.. Enumerable.Range(0, 50).Select(_ => 1 + rng.Next(model.VideoCount - 1))],
            [.. Enumerable.Range(0, 20).Select(_ => 1 + rng.Next(model.VideoCount - 1))],
            [.. Enumerable.Range(0, 20).Select(_ => new[] { 1 + rng.Next(model.CommentCount - 1), 1 + rng.Next(model.CommentCount - 1) })])).ToList();
        var watched = users.Select(_ => 1 + rng.Next(model.VideoCount - 1)).ToList();
        // Wall time and this thread's CPU time (the machine is shared: CPU time is the figure that does not depend on
        // the neighbours' load, as long as intra-op threads = 1).
        double encode = 0, topk = 0, comm = 0, encodeCpu = 0, topkCpu = 0, commCpu = 0;
        static double Cpu() => ThreadCpu.Milliseconds();
        for (int i = 0; i < iterations; i++)
        {
            var t = Stopwatch.StartNew();
            var c = Cpu();
            using var o = model.EncodeRec(users);
            encode += t.Elapsed.TotalMilliseconds;
            encodeCpu += Cpu() - c;
            t.Restart();
            c = Cpu();
            for (int r = 0; r < batch; r++) LSVCR.Serving.TopK.Select(o.Scores(r), 10);
            topk += t.Elapsed.TotalMilliseconds;
            topkCpu += Cpu() - c;
            t.Restart();
            c = Cpu();
            model.EncodeCommRank(users, watched);
            comm += t.Elapsed.TotalMilliseconds;
            commCpu += Cpu() - c;
        }
        Console.WriteLine($"batch {batch}, {threads} thread(s): rec encode+scores {encode / iterations:F2} ms (cpu {encodeCpu / iterations:F2}), top-k {topk / iterations:F2} ms (cpu {topkCpu / iterations:F2}), " +
                          $"commrank encode {comm / iterations:F2} ms (cpu {commCpu / iterations:F2}) per batch; rec cpu per request {(encodeCpu + topkCpu) / iterations / batch:F3} ms");
    }
}

/// <summary>The calling thread's CPU time (clock_gettime CLOCK_THREAD_CPUTIME_ID).</summary>
internal static class ThreadCpu
{
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Timespec { public long Sec, Nsec; }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out Timespec ts);

    public static double Milliseconds()
    {
        ClockGetTime(3, out var ts); // CLOCK_THREAD_CPUTIME_ID
        return ts.Sec * 1e3 + ts.Nsec / 1e6;
    }
}

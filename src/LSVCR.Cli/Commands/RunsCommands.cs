using System.CommandLine;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

/// <summary>
/// <c>lsvcr runs start|status|list --server URL</c>: a client of the Runs API (docs/distributed.md) for people — upload a
/// dataset folder (zipped on the way) or ask for a synthetic one, start a run, follow it step by step.
/// </summary>
public static class RunsCommands
{
    public static Command Runs()
    {
        var command = new Command("runs", "Start and follow pipeline runs on the distributed suite's Runs API.");
        command.Subcommands.Add(Start());
        command.Subcommands.Add(Status());
        command.Subcommands.Add(List());
        return command;
    }

    private static Option<string> Server() => new("--server")
    {
        Description = "Base URL of the Runs API (the AppHost's runs-api, e.g. http://localhost:5180).", DefaultValueFactory = _ => "http://localhost:5180",
    };

    private static Command Start()
    {
        var server = Server();
        var data = new Option<string?>("--data") { Description = "Dataset folder in the reference layout to upload (zipped and validated by the server)." };
        var users = new Option<int?>("--synthetic-users") { Description = "Instead of --data: a synthetic dataset of this many users, made by the suite." };
        var videos = new Option<int>("--synthetic-videos") { Description = "Videos of the synthetic dataset (0 = the generator's default).", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic dataset.", DefaultValueFactory = _ => 42 };
        var epochs = new Option<int?>("--epochs") { Description = "Fine-tuning epochs (default: the service's)." };
        var noGate = new Option<bool>("--no-gate") { Description = "Publish the model even if it does not beat popularity (tiny test data)." };
        var follow = new Option<bool>("--follow") { Description = "Follow the run until it is published or failed (exit 1 when it fails)." };
        var command = new Command("start", "Upload a dataset (or ask for a synthetic one) and start a run; prints the run id.")
        {
            server, data, users, videos, seed, epochs, noGate, follow,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            using var http = Client(parse.GetValue(server)!);
            var folder = parse.GetValue(data);
            var synthetic = parse.GetValue(users);
            if ((folder is null) == (synthetic is null)) throw new ArgumentException("give either --data FOLDER or --synthetic-users N");
            var request = new JsonObject();
            if (folder is not null) request["datasetId"] = await UploadAsync(http, folder, ct);
            else request["synthetic"] = new JsonObject { ["users"] = synthetic, ["videos"] = parse.GetValue(videos), ["seed"] = parse.GetValue(seed) };
            var options = new JsonObject();
            if (parse.GetValue(epochs) is { } e) options["fineTune"] = new JsonObject { ["epochs"] = e };
            if (parse.GetValue(noGate)) options["gate"] = new JsonObject { ["enabled"] = false };
            request["options"] = options;
            var response = await http.PostAsJsonAsync("v1/runs", request, ct);
            var body = await Read(response, "POST /v1/runs", ct);
            var runId = body["runId"]!.GetValue<string>();
            AnsiConsole.MarkupLineInterpolated($"run [bold]{runId}[/] submitted");
            return parse.GetValue(follow) ? await FollowAsync(http, runId, ct) : 0;
        });
        return command;
    }

    private static Command Status()
    {
        var server = Server();
        var run = new Argument<string>("run") { Description = "The run id start printed." };
        var follow = new Option<bool>("--follow") { Description = "Follow the run until it is published or failed (exit 1 when it fails)." };
        var command = new Command("status", "A run's state, its steps with timings and progress, its artifacts and failure reason.") { server, run, follow };
        CliAction.Set(command, async (parse, ct) =>
        {
            using var http = Client(parse.GetValue(server)!);
            var id = parse.GetValue(run)!;
            if (parse.GetValue(follow)) return await FollowAsync(http, id, ct);
            var state = await GetRunAsync(http, id, ct) ?? throw new LsvcrException($"run {id}: not found on the server");
            Print(state);
            return 0;
        });
        return command;
    }

    private static Command List()
    {
        var server = Server();
        var command = new Command("list", "Every run, newest first.") { server };
        CliAction.Set(command, async (parse, ct) =>
        {
            using var http = Client(parse.GetValue(server)!);
            var runs = (await Read(await http.GetAsync("v1/runs", ct), "GET /v1/runs", ct)).AsArray();
            var table = new Table().AddColumns("run", "state", "submitted", "dataset", "failure");
            foreach (var r in runs)
                table.AddRow(Markup.Escape(r!["runId"]!.GetValue<string>()), Markup.Escape(r["state"]!.GetValue<string>()),
                    Markup.Escape(r["submittedAt"]?.GetValue<string>() ?? ""), Markup.Escape(r["datasetId"]?.GetValue<string>() ?? ""),
                    Markup.Escape(r["failureReason"]?.GetValue<string>() ?? ""));
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLineInterpolated($"{runs.Count} run(s)");
            return 0;
        });
        return command;
    }

    private static HttpClient Client(string server)
    {
        if (!Uri.TryCreate(server.EndsWith('/') ? server : server + "/", UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--server '{server}' is not an http(s) URL");
        return new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromMinutes(10) };
    }

    /// <summary>Zips the folder and uploads it; the server validates it (problems come back listed, nothing stored).</summary>
    private static async Task<string> UploadAsync(HttpClient http, string folder, CancellationToken ct)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: dataset folder not found");
        using var zip = new MemoryStream();
        await ZipFile.CreateFromDirectoryAsync(folder, zip, CompressionLevel.Fastest, includeBaseDirectory: false, ct);
        var content = new ByteArrayContent(zip.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var body = await Read(await http.PostAsync("v1/datasets", content, ct), $"upload of {folder}", ct);
        var id = body["datasetId"]!.GetValue<string>();
        AnsiConsole.MarkupLineInterpolated($"dataset [bold]{id}[/] uploaded ({zip.Length / 1024.0:F0} KiB zipped)");
        return id;
    }

    /// <summary>Polls the run and shows one progress bar per step until it ends; 0 when published, 1 when failed.</summary>
    private static async Task<int> FollowAsync(HttpClient http, string runId, CancellationToken ct)
    {
        JsonNode? run = null;
        async Task Poll(Action<JsonNode> show)
        {
            var missingSince = DateTime.UtcNow;
            while (true)
            {
                // Right after the 202 the run is unknown until the orchestrator has taken the message.
                run = await GetRunAsync(http, runId, ct);
                if (run is null && DateTime.UtcNow - missingSince > TimeSpan.FromMinutes(1)) throw new LsvcrException($"run {runId}: not found on the server");
                if (run is not null)
                {
                    show(run);
                    if (run["state"]!.GetValue<string>() is "Published" or "Failed") return;
                }
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
        }
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            await AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                .StartAsync(async ctx =>
                {
                    var tasks = new Dictionary<string, ProgressTask>();
                    await Poll(r =>
                    {
                        foreach (var step in r["steps"]!.AsArray())
                        {
                            var name = step!["name"]!.GetValue<string>();
                            if (!tasks.TryGetValue(name, out var task)) tasks[name] = task = ctx.AddTask(Markup.Escape(name), maxValue: 1);
                            var status = step["status"]!.GetValue<string>();
                            task.Description = Markup.Escape($"{name} {status}{(step["progress"]?.GetValue<string>() is { } p ? ": " + p : "")}");
                            if (status != "Running") task.Value = 1;
                            if (status != "Running") task.StopTask();
                        }
                    });
                });
        }
        else
        {
            var printed = new HashSet<string>();
            await Poll(r =>
            {
                foreach (var step in r["steps"]!.AsArray())
                {
                    var line = $"{step!["name"]} {step["status"]}{(step["seconds"]?.GetValue<double>() is { } s ? $" ({s:F1} s)" : "")}";
                    if (printed.Add(line)) Console.WriteLine(line);
                }
            });
        }
        Print(run!);
        return run!["state"]!.GetValue<string>() == "Published" ? 0 : 1;
    }

    private static void Print(JsonNode run)
    {
        var state = run["state"]!.GetValue<string>();
        var colour = state switch { "Published" => "green", "Failed" => "red", _ => "yellow" };
        AnsiConsole.MarkupLineInterpolated($"run {run["runId"]!.GetValue<string>()}: [{colour}]{state}[/]");
        var table = new Table().AddColumns("step", "status", "seconds", "progress / error");
        foreach (var step in run["steps"]!.AsArray())
            table.AddRow(Markup.Escape(step!["name"]!.GetValue<string>()), Markup.Escape(step["status"]!.GetValue<string>()),
                step["seconds"]?.GetValue<double>() is { } s ? s.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) : "",
                Markup.Escape(step["error"]?.GetValue<string>() ?? step["progress"]?.GetValue<string>() ?? ""));
        AnsiConsole.Write(table);
        if (run["modelVersion"]?.GetValue<string>() is { } version) AnsiConsole.MarkupLineInterpolated($"model version {version}");
        if (run["failureReason"]?.GetValue<string>() is { } reason) AnsiConsole.MarkupLineInterpolated($"[red]failed[/] in {run["failedStep"]}: {reason}");
    }

    private static async Task<JsonNode?> GetRunAsync(HttpClient http, string runId, CancellationToken ct)
    {
        if (!Guid.TryParse(runId, out _)) throw new ArgumentException($"'{runId}' is not a run id (a GUID)");
        var response = await http.GetAsync($"v1/runs/{runId}", ct);
        if (response.StatusCode == HttpStatusCode.NotFound) return null;
        return await Read(response, $"GET /v1/runs/{runId}", ct);
    }

    /// <summary>The JSON body of a success; a problem-details answer becomes one error naming what the server said.</summary>
    private static async Task<JsonNode> Read(HttpResponseMessage response, string what, CancellationToken ct)
    {
        var text = await response.Content.ReadAsStringAsync(ct);
        if (response.IsSuccessStatusCode) return JsonNode.Parse(text) ?? throw new LsvcrException($"{what}: empty answer");
        string detail = text;
        try
        {
            if (JsonNode.Parse(text) is JsonObject problem)
            {
                detail = problem["detail"]?.GetValue<string>() ?? problem["title"]?.GetValue<string>() ?? text;
                if (problem["errors"] is JsonObject errors)
                    detail += Environment.NewLine + string.Join(Environment.NewLine, errors.SelectMany(e => e.Value!.AsArray().Select(v => $"  {v}")));
            }
        }
        catch (System.Text.Json.JsonException) { }
        throw new LsvcrException($"{what}: {(int)response.StatusCode} {response.ReasonPhrase}: {detail}");
    }
}

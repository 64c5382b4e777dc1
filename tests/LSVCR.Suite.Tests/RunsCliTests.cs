using System.Text.RegularExpressions;
using LSVCR.Cli;
using LSVCR.Data;
using LSVCR.Training;
using Spectre.Console;

namespace LSVCR.Suite.Tests;

/// <summary><c>lsvcr runs start|status|list</c> against the suite's real Runs API.</summary>
[Collection(SuiteCollection.Name)]
public sealed partial class RunsCliTests(SuiteFixture suite)
{
    private string Server => suite.Api.BaseAddress!.ToString();

    [Fact]
    public async Task Runs_start_uploads_a_folder_follows_the_run_to_Published_and_status_and_list_show_it()
    {
        var dir = SuiteFixture.TinyDataset(seed: 41);
        var (code, output) = await Lsvcr("runs", "start", "--server", Server, "--data", dir, "--epochs", "1", "--no-gate", "--follow");
        Directory.Delete(dir, recursive: true);
        Assert.True(code == 0, output);
        Assert.Matches("dataset ds-[0-9a-f]+ uploaded", output);
        var runId = RunId().Match(output).Groups[1].Value;
        Assert.True(Guid.TryParse(runId, out _), output);
        Assert.Contains($"run {runId}: Published", output);
        foreach (var step in new[] { "embeddings Completed", "fine-tuning-rec Completed", "fine-tuning-comm_rank Completed", "evaluation Completed" })
            Assert.Contains(step, output);

        (code, output) = await Lsvcr("runs", "status", runId, "--server", Server);
        Assert.Equal(0, code);
        Assert.Contains($"run {runId}: Published", output);
        Assert.Contains("model version", output);

        (code, output) = await Lsvcr("runs", "list", "--server", Server);
        Assert.Equal(0, code);
        Assert.Contains(runId, output);
    }

    [Fact]
    public async Task Runs_start_with_a_broken_dataset_prints_the_servers_problems_and_exits_1()
    {
        var dir = SuiteFixture.TinyDataset(seed: 42);
        var file = Path.Combine(dir, TaskNames.FileName(TaskKind.Rec, Split.Train));
        var lines = File.ReadAllLines(file);
        lines[1] = "{ not json";
        File.WriteAllLines(file, lines);
        var (code, output) = await Lsvcr("runs", "start", "--server", Server, "--data", dir);
        Directory.Delete(dir, recursive: true);
        Assert.Equal(1, code);
        Assert.Contains("400", output);
        Assert.Contains($"{Path.GetFileName(file)}:2", output);

        (code, output) = await Lsvcr("runs", "status", Guid.NewGuid().ToString(), "--server", Server);
        Assert.Equal(1, code);
        Assert.Contains("not found", output);
    }

    /// <summary>Runs the CLI in-process with its console (Spectre's and plain) captured, as a redirected terminal.</summary>
    private static async Task<(int Code, string Output)> Lsvcr(params string[] args)
    {
        var writer = new StringWriter();
        var (console, stdout, stderr) = (AnsiConsole.Console, Console.Out, Console.Error);
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        AnsiConsole.Console.Profile.Width = 240; // no wrapping inside the lines the test looks for
        Console.SetOut(writer);
        Console.SetError(writer);
        try
        {
            var code = await LsvcrCli.Build().Parse(args).InvokeAsync();
            return (code, writer.ToString());
        }
        finally
        {
            AnsiConsole.Console = console;
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    [GeneratedRegex("run ([0-9a-f-]{36}) submitted")]
    private static partial Regex RunId();
}

using System.CommandLine;
using System.Globalization;
using LSVCR.Modeling;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class ModelCommands
{
    public static IEnumerable<Command> Bench() => [BenchTrain()];

    private static Command BenchTrain()
    {
        var d = new TrainBenchOptions();
        var batch = new Option<int>("--batch") { Description = "Examples per step.", DefaultValueFactory = _ => d.Batch };
        var history = new Option<int>("--history") { Description = "Length of both histories (all positions filled).", DefaultValueFactory = _ => d.History };
        var videos = new Option<int>("--videos") { Description = "Videos in the catalogue (the full softmax ranks all of them).", DefaultValueFactory = _ => d.Videos };
        var dim = new Option<int>("--dim") { Description = "Text-embedding width E fed to llm_adapter.", DefaultValueFactory = _ => d.TextDim };
        var idText = new Option<double>("--id-text") { Description = "Weight of the id–text alignment loss (0 = off).", DefaultValueFactory = _ => d.IdTextWeight };
        var steps = new Option<int>("--steps") { Description = "Measured steps (after warmup).", DefaultValueFactory = _ => d.Steps };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured warmup steps.", DefaultValueFactory = _ => d.Warmup };
        var threads = new Option<int>("--threads") { Description = "torch intra-op threads.", DefaultValueFactory = _ => 2 };
        var shards = new Option<int>("--shards") { Description = "Data-parallel slices of the batch (as fine-tuning runs them; 1 = one pass over the whole batch).", DefaultValueFactory = _ => d.Shards };
        var mmap = new Option<bool>("--default-allocator") { Description = "Leave glibc malloc at its defaults (large tensors mmapped per allocation) instead of CpuAllocator.KeepFreedMemory." };
        var noCpuKernels = HostOptions.NoCpuKernels();
        var command = new Command("train", "Time a Rec training step (random batch, full softmax over all videos, id–text loss, AdamW) and print samples/s.")
        {
            batch, history, videos, dim, idText, steps, warmup, threads, shards, mmap, noCpuKernels,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = d with
            {
                Batch = parse.GetValue(batch), History = parse.GetValue(history), Videos = parse.GetValue(videos),
                TextDim = parse.GetValue(dim), IdTextWeight = parse.GetValue(idText), Steps = parse.GetValue(steps),
                Warmup = parse.GetValue(warmup), Shards = parse.GetValue(shards), CpuKernels = !parse.GetValue(noCpuKernels),
            };
            var defaultAllocator = parse.GetValue(mmap);
            HostOptions.Apply(parse.GetValue(threads), keepFreedMemory: !defaultAllocator);
            var r = await CliProgress.RunAsync(p => Task.Run(() => TrainStepBench.Run(options, p, ct), ct));
            var inv = CultureInfo.InvariantCulture;
            AnsiConsole.MarkupLineInterpolated(inv,
                $"[green]{r.SamplesPerSecond:F0} samples/s[/] ({r.Steps} steps × {r.Batch} in {r.Seconds:F2} s; batch {options.Batch}, history {options.History}, {options.Videos:N0} videos, E={options.TextDim}, id-text {options.IdTextWeight}, {r.Threads} threads, {options.Shards} shards, {r.Backend}{(defaultAllocator ? ", default allocator" : "")})");
            AnsiConsole.MarkupLineInterpolated(inv,
                $"  per step: {string.Join(", ", r.PhaseSeconds.Select(kv => $"{kv.Key} {kv.Value / r.Steps * 1000:F0} ms"))}; loss {r.FirstLoss:F3} → {r.LastLoss:F3}");
            AnsiConsole.MarkupLineInterpolated(inv, $"  CPU time {r.CpuSeconds / r.Steps:F2} s/step = {r.SamplesPerCpuSecond:F0} samples per CPU-second; load average: {LoadAverage()}");
            return 0;
        });
        return command;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Trim(); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }
}

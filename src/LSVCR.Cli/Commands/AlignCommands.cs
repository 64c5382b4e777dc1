using System.CommandLine;
using System.Globalization;
using LSVCR.Alignment;
using LSVCR.Alignment.Lora;
using LSVCR.Data;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

/// <summary><c>lsvcr align</c>: stage 1 (MODEL.md §3).</summary>
public static class AlignCommands
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Align()
    {
        var d = new AlignOptions();
        var data = new Option<string>("--data") { Description = "Dataset folder in the reference layout.", Required = true };
        var output = new Option<string>("--out") { Description = "Run folder: reccom.safetensors (for train --init), lora.safetensors, heads.safetensors, embeddings/ (E-wide photo_embs.npy, comment_embs.npy), align.json, checkpoint/. Rerunning the same command resumes.", Required = true };
        var backbone = new Option<string>("--llm") { Description = "minilm (built in, CPU default) or a Hugging Face decoder folder (Llama/Qwen2: config.json, *.safetensors, tokenizer.json).", DefaultValueFactory = _ => d.Backbone };
        var device = new Option<string>("--device") { Description = "cpu or cuda.", DefaultValueFactory = _ => d.Device }.AcceptOnlyFromAmong("cpu", "cuda");
        var examples = new Option<int?>("--examples") { Description = "Examples to train on (default: all Rec and CommRank train examples × --epochs)." };
        var budget = new Option<string?>("--time-budget") { Description = "Stop training after this long, e.g. 90s, 5m, 1h (then write the outputs)." };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the train examples (when --examples is not given).", DefaultValueFactory = _ => d.Epochs };
        var batch = new Option<int>("--batch") { Description = "Examples per batch (in-batch contrast negatives = batch − 1).", DefaultValueFactory = _ => d.BatchSize };
        var accumulation = new Option<int>("--accumulation") { Description = "Batches per optimiser step.", DefaultValueFactory = _ => d.Accumulation };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate.", DefaultValueFactory = _ => d.Lr };
        var warmup = new Option<double>("--warmup") { Description = "Linear warmup as a fraction of the optimiser steps, then linear decay.", DefaultValueFactory = _ => d.Warmup };
        var weightDecay = new Option<double>("--weight-decay") { Description = "AdamW weight decay.", DefaultValueFactory = _ => d.WeightDecay };
        var seed = new Option<int>("--seed") { Description = "Seed of initialisation, example order, augmentation, positions and dropout.", DefaultValueFactory = _ => d.Seed };
        var maxHistory = new Option<int>("--max-history") { Description = "Most recent history entries per behaviour.", DefaultValueFactory = _ => d.MaxHistory };
        var itemTokens = new Option<int>("--item-tokens") { Description = "Tokens per item text the LLM encodes.", DefaultValueFactory = _ => d.ItemTokens };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Tokens per prompt (capped at the LLM's limit).", DefaultValueFactory = _ => d.PromptTokens };
        var rank = new Option<int>("--lora-rank") { Description = "LoRA rank r.", DefaultValueFactory = _ => d.Lora.Rank };
        var alpha = new Option<double>("--lora-alpha") { Description = "LoRA α (the adapter is scaled by α/r).", DefaultValueFactory = _ => d.Lora.Alpha };
        var dropout = new Option<double>("--lora-dropout") { Description = "Dropout on the adapter input.", DefaultValueFactory = _ => d.Lora.Dropout };
        var targets = new Option<string?>("--lora-targets") { Description = "Comma-separated projection names (default: every attention and MLP projection; minilm: query,key,value,attention_output,intermediate,output; decoders: q_proj,…,down_proj)." };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Optimiser steps between resumable checkpoints.", DefaultValueFactory = _ => d.CheckpointEvery };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var command = new Command("align", "Stage 1: train an LLM with LoRA jointly with the SR model (stage-1 form) on mixed Rec/CommRank prompts; write the aligned SR weights (for train --init) and re-encoded item embeddings (for train --embeddings).")
        {
            data, output, backbone, device, examples, budget, epochs, batch, accumulation, lr, warmup, weightDecay, seed, maxHistory,
            itemTokens, promptTokens, rank, alpha, dropout, targets, checkpointEvery, threads,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = new AlignOptions
            {
                Backbone = parse.GetValue(backbone)!, Device = parse.GetValue(device)!, Examples = parse.GetValue(examples),
                TimeBudget = ParseDuration(parse.GetValue(budget)), Epochs = parse.GetValue(epochs), BatchSize = parse.GetValue(batch),
                Accumulation = parse.GetValue(accumulation), Lr = parse.GetValue(lr), Warmup = parse.GetValue(warmup),
                WeightDecay = parse.GetValue(weightDecay), Seed = parse.GetValue(seed), MaxHistory = parse.GetValue(maxHistory),
                ItemTokens = parse.GetValue(itemTokens), PromptTokens = parse.GetValue(promptTokens),
                CheckpointEvery = parse.GetValue(checkpointEvery), Threads = parse.GetValue(threads),
                Lora = new LoraOptions
                {
                    Rank = parse.GetValue(rank), Alpha = parse.GetValue(alpha), Dropout = parse.GetValue(dropout),
                    Targets = parse.GetValue(targets)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                },
            };
            options.Validate();
            var outDir = parse.GetValue(output)!;
            var dataDir = parse.GetValue(data)!;
            var result = await CliProgress.RunAsync(p => Task.Factory.StartNew(() =>
            {
                var dataset = ReferenceLayout.Read(dataDir, p);
                return AlignTrainer.Run(dataset, options, outDir, p, ct);
            }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            var table = new Table().AddColumns("batches", "lm", "rec", "bhv", "nce", "total", "examples/s");
            foreach (var (label, rows) in Slices(result.History))
                table.AddRow(label, F(rows.Average(h => h.Lm)), F(rows.Average(h => h.Rec)), F(rows.Average(h => h.Bhv)),
                    F(rows.Average(h => h.Nce)), F(rows.Average(h => h.Total)), rows.Average(h => h.ExamplesPerSecond).ToString("F2", Inv));
            AnsiConsole.Write(table);
            if (result.ResumedAfterBatch > 0) AnsiConsole.MarkupLineInterpolated($"resumed after batch {result.ResumedAfterBatch}");
            if (result.StoppedByTimeBudget) AnsiConsole.MarkupLineInterpolated($"[yellow]stopped by --time-budget[/] after {result.Examples} examples");
            AnsiConsole.MarkupLineInterpolated(
                $"[green]done[/]: {result.Backbone}, {result.Examples} examples, {result.OptimizerSteps} optimiser steps, {result.TrainSeconds:F0} s → {result.SrWeights} (train --init), {result.EmbeddingsDir} (train --embeddings)");
            return 0;
        });
        return command;
    }

    public static IEnumerable<Command> Bench() => [BenchAlign()];

    private static Command BenchAlign()
    {
        var d = new AlignOptions();
        var data = new Option<string?>("--data") { Description = "Dataset in the reference layout (default: the pipeline's synthetic dataset, generated in memory)." };
        var steps = new Option<int>("--steps") { Description = "Timed steps (after one warm-up step).", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch") { Description = "Examples per step.", DefaultValueFactory = _ => d.BatchSize };
        var maxHistory = new Option<int>("--max-history") { Description = "History entries per behaviour (reference: 20).", DefaultValueFactory = _ => d.MaxHistory };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads (default: one per core)." };
        var command = new Command("align", "Examples/s of stage-1 training steps with MiniLM on the longest histories, against the steps' FLOP bound (FLOPs counted from the shapes run ÷ measured GEMM GFLOP/s).")
        {
            data, steps, batch, maxHistory, threads,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = new AlignOptions { BatchSize = parse.GetValue(batch), MaxHistory = parse.GetValue(maxHistory), Threads = parse.GetValue(threads) ?? Environment.ProcessorCount };
            var r = await CliProgress.RunAsync(p => Task.Factory.StartNew(() =>
            {
                var dir = parse.GetValue(data);
                var dataset = dir is null ? SyntheticDataset.Generate(new Pipeline.PipelineOptions { OutDir = "." }.Synth, p) : ReferenceLayout.Read(dir, p);
                return AlignBench.Run(dataset, options, parse.GetValue(steps), p, ct);
            }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            var table = new Table().AddColumns("steps", "batch", "history", "threads", "examples/s", "GFLOP/step", "GEMM GFLOP/s", "bound examples/s", "of bound", "CPU s", "examples/core-s", "of bound (CPU)");
            table.AddRow(r.Steps.ToString(Inv), r.BatchSize.ToString(Inv), r.MaxHistory.ToString(Inv), r.Threads.ToString(Inv), r.ExamplesPerSecond.ToString("F3", Inv),
                (r.StepFlops / 1e9).ToString("F1", Inv), r.PeakGflops.ToString("F1", Inv), r.BoundExamplesPerSecond.ToString("F3", Inv), r.FractionOfBound.ToString("P0", Inv),
                r.CpuSeconds.ToString("F1", Inv), r.ExamplesPerCoreSecond.ToString("F3", Inv), (r.ExamplesPerCoreSecond / r.BoundExamplesPerSecond).ToString("P0", Inv));
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static string F(double v) => double.IsNaN(v) ? "—" : v.ToString("F4", Inv);

    /// <summary>The history in up to four consecutive slices, so the table shows the loss curve.</summary>
    private static IEnumerable<(string, IReadOnlyList<BatchLosses>)> Slices(IReadOnlyList<BatchLosses> history)
    {
        if (history.Count == 0) yield break;
        int parts = Math.Min(4, history.Count), size = (history.Count + parts - 1) / parts;
        for (int start = 0; start < history.Count; start += size)
        {
            var rows = history.Skip(start).Take(size).ToList();
            yield return ($"{rows[0].Batch + 1}–{rows[^1].Batch + 1}", rows);
        }
    }

    /// <summary>"90s", "5m", "1.5h", or a TimeSpan ("00:05:00").</summary>
    internal static TimeSpan? ParseDuration(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        text = text.Trim();
        double Number(string s) => double.TryParse(s, NumberStyles.Float, Inv, out var v) && v > 0 ? v
            : throw new LsvcrException($"--time-budget: '{text}' is not a duration (e.g. 90s, 5m, 1h, 00:05:00)");
        return text[^1] switch
        {
            's' => TimeSpan.FromSeconds(Number(text[..^1])),
            'm' => TimeSpan.FromMinutes(Number(text[..^1])),
            'h' => TimeSpan.FromHours(Number(text[..^1])),
            _ when TimeSpan.TryParse(text, Inv, out var t) && t > TimeSpan.Zero => t,
            _ => throw new LsvcrException($"--time-budget: '{text}' is not a duration (e.g. 90s, 5m, 1h, 00:05:00)"),
        };
    }
}

using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using LSVCR.Training;

namespace LSVCR.Cli.Commands;

/// <summary>
/// The training-settings flags of <c>train</c>, <c>experiment</c> and <c>pipeline</c> plus <c>--config FILE</c>. Every
/// flag is named like its settings key (<see cref="TrainOptions.Keys"/>), so a flag and a file line mean the same; the
/// settings are the command's defaults, then the file, then the flags the user typed (flags left out do not reset
/// what the file set).
/// </summary>
internal sealed class TrainingSettingsOptions
{
    private readonly List<(string Key, Option Option, Func<ParseResult, JsonNode?> Value)> _flags = [];

    private TrainingSettingsOptions() { }

    public Option<string?> Config { get; } = new("--config")
    {
        HelpName = "FILE",
        Description = "Settings file, JSON or YAML, with keys named like these flags (e.g. {\"epochs\": 1, \"dropout\": 0.1}); " +
                      "flags given as well override it. Every key, its default and the reference's value: docs/training.md.",
    };

    public IEnumerable<Option> All => [Config, .. _flags.Select(f => f.Option)];

    /// <param name="defaults">The command's defaults (shown in the help).</param>
    /// <param name="except">Keys the command handles itself (e.g. the pipeline's <c>--seed</c> also seeds the data).</param>
    public static TrainingSettingsOptions Create(TrainOptions defaults, params string[] except)
    {
        var d = defaults;
        var s = new TrainingSettingsOptions();
        void Add<T>(string key, FormattableString description, Action<Option<T>>? configure = null)
        {
            if (except.Contains(key)) return;
            if (!TrainOptions.Keys.Contains(key)) throw new InvalidOperationException($"'{key}' is not a settings key");
            var option = new Option<T>("--" + key) { Description = FormattableString.Invariant(description) };
            configure?.Invoke(option);
            s._flags.Add((key, option, p => JsonSerializer.SerializeToNode(p.GetValue(option))));
        }
        Add<int>("epochs", $"Most epochs to train; early stopping may end sooner (default {d.Epochs}; reference 50).");
        Add<int>("batch", $"Examples per batch (default {d.BatchSize}; reference 512).");
        Add<double>("lr", $"AdamW learning rate (default {d.Lr:G}; reference 1e-3).");
        Add<double>("weight-decay", $"AdamW weight decay (default {d.WeightDecay:G}; reference 1e-5).");
        Add<double>("adam-beta1", $"AdamW beta1 (default {d.AdamBeta1:G}; reference 0.9).");
        Add<double>("adam-beta2", $"AdamW beta2 (default {d.AdamBeta2:G}; reference 0.999).");
        Add<double>("adam-eps", $"AdamW epsilon (default {d.AdamEps:G}; reference 1e-8).");
        Add<string>("schedule", $"Learning-rate schedule after the warmup: constant, or linear decay to 0 (default {d.Schedule}; reference constant).",
            o => o.AcceptOnlyFromAmong("constant", "linear"));
        Add<double>("warmup", $"Warmup as a fraction of all steps: ceil(X × steps) steps rising linearly from lr 0 (default {d.Warmup:G}; reference 0; stage 1 0.03).");
        Add<int>("patience", $"Stop after this many epochs without a better validation ndcg@5 (default {d.Patience}; the reference runs every epoch).");
        Add<double>("id-text-weight", $"Weight of the id–text alignment loss (default {d.IdTextWeight:G}; reference run 0.1).");
        Add<int?>("negatives", $"Rec: sampled softmax with K negatives (default: full softmax). CommRank: negatives per positive (default 19, as the reference).");
        Add<int>("seed", $"Seed of initialisation, shuffling, sampling and dropout (default {d.Seed}).");
        Add<int?>("hidden", $"SR hidden size d (default {TrainOptions.DefaultHidden}, or the --init checkpoint's; reference 64).");
        Add<int?>("heads", $"Attention heads; must divide --hidden (default {TrainOptions.DefaultHeads}, or the --init checkpoint's; reference 2).");
        Add<int?>("layers", $"Encoder layers per history (default {TrainOptions.DefaultLayers}, or the --init checkpoint's; reference 2).");
        Add<int?>("mix-layers", $"Cross-behaviour mixing layers (default {TrainOptions.DefaultMixLayers}, or the --init checkpoint's; reference 1).");
        Add<int?>("inner", $"Feed-forward inner size (default {TrainOptions.DefaultInner}, or the --init checkpoint's; reference 256).");
        Add<double>("dropout", $"Hidden dropout, and attention dropout unless --attention-dropout is given, in [0, 1) (default {d.Dropout:G}; reference 0.3).");
        Add<double?>("attention-dropout", $"Attention dropout alone, in [0, 1) (default: --dropout; reference 0.3).");
        Add<int>("max-position", $"Longest history kept, most recent entries (default {d.MaxPosition}; reference 50).");
        Add<double>("temperature", $"Softmax temperature T of the cosine scores (default {d.Temperature:G}; reference 0.07).");
        Add<string?>("init", $"Weights to start from: a checkpoint folder (e.g. a previous run; its model shape is used) or a reference state dict (.pt/.bin/.safetensors, e.g. stage 1).", o => o.HelpName = "CHECKPOINT");
        Add<int?>("threads", $"libtorch intra-op threads (default: one per core; 1 is often fastest on small shared machines).");
        Add<int>("shards", $"Data-parallel slices of each batch, run concurrently when there is a thread per slice; results depend on this, not on --threads (default {d.Shards}).");
        return s;
    }

    /// <summary>The backend opt-out, stored as <c>"cpu-kernels": false</c>.</summary>
    private Option<bool> NoCpuKernels { get; } = HostOptions.NoCpuKernels();

    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
        command.Options.Add(NoCpuKernels);
    }

    /// <summary><paramref name="defaults"/>, then the <c>--config</c> file, then the flags given, then <paramref name="more"/>
    /// (flags the command reads itself). Not yet resolved or checked: <see cref="TrainSettings.Resolve"/> does that.</summary>
    public TrainOptions Read(ParseResult parse, TrainOptions defaults, JsonObject? more = null)
    {
        var options = parse.GetValue(Config) is { } path ? TrainSettings.ApplyFile(defaults, path) : defaults;
        var flags = new JsonObject();
        foreach (var (key, option, value) in _flags)
            if (parse.GetResult(option) is { Implicit: false }) flags[key] = value(parse);
        if (parse.GetValue(NoCpuKernels)) flags["cpu-kernels"] = false;
        foreach (var (key, value) in more ?? []) flags[key] = value?.DeepClone();
        return options.With(flags, "command line");
    }
}

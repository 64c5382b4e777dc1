using LSVCR.Embeddings;
using LSVCR.Training;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>Settings every job shares (configuration section <c>Jobs</c>).</summary>
public sealed class JobsOptions
{
    public const string Section = "Jobs";

    /// <summary>Local scratch space: each step works in <c>{WorkDirectory}/{step}/{step key}</c>, so a step killed and
    /// retried on the same machine resumes (embedding chunks, training epochs); removed once its output is published.</summary>
    public string WorkDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "lsvcr-jobs");
}

/// <summary>Section <c>Jobs:Embeddings</c>.</summary>
public sealed class EmbeddingsJobOptions
{
    public const string Section = "Jobs:Embeddings";
    public EmbedOptions Embed { get; set; } = new();
}

/// <summary>Section <c>Jobs:FineTuning</c>: defaults for requests that bring no training options of their own.</summary>
public sealed class FineTuningJobOptions
{
    public const string Section = "Jobs:FineTuning";
    public TrainOptions Training { get; set; } = new();
    /// <summary>The per-epoch validation that picks the best checkpoint.</summary>
    public EvalOptions Validation { get; set; } = new();
}

/// <summary>Section <c>Jobs:Alignment</c>: stage-1 settings. The default is the embedded pipeline's bounded CPU sample
/// (<see cref="LSVCR.Alignment.PipelineAlignmentStage.PipelineDefaults"/>); a GPU host sets the reference run's.</summary>
public sealed class AlignmentJobOptions
{
    public const string Section = "Jobs:Alignment";
    public LSVCR.Alignment.AlignOptions Align { get; set; } = LSVCR.Alignment.PipelineAlignmentStage.PipelineDefaults;
}

/// <summary>Section <c>Jobs:Evaluation</c>.</summary>
public sealed class EvaluationJobOptions
{
    public const string Section = "Jobs:Evaluation";
    public EvalOptions Evaluation { get; set; } = new();
}

/// <summary>Section <c>Jobs:Experiment</c>.</summary>
public sealed class ExperimentJobOptions
{
    public const string Section = "Jobs:Experiment";
    public TrainOptions Training { get; set; } = new();
    public EvalOptions Evaluation { get; set; } = new();
}

/// <summary>Runs the libraries' own checks on bound options, so a host with a bad setting fails at start with the library's message.</summary>
internal sealed class JobOptionsValidator :
    IValidateOptions<JobsOptions>, IValidateOptions<EmbeddingsJobOptions>, IValidateOptions<FineTuningJobOptions>,
    IValidateOptions<EvaluationJobOptions>, IValidateOptions<ExperimentJobOptions>, IValidateOptions<AlignmentJobOptions>
{
    private static ValidateOptionsResult Check(string section, params Action[] checks)
    {
        var failures = new List<string>();
        foreach (var check in checks)
        {
            try { check(); }
            catch (LsvcrException e) { failures.Add($"{section}: {e.Message}"); }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    public ValidateOptionsResult Validate(string? name, JobsOptions o) => Check(JobsOptions.Section, () =>
    {
        if (string.IsNullOrWhiteSpace(o.WorkDirectory)) throw new LsvcrException("WorkDirectory is empty");
    });

    public ValidateOptionsResult Validate(string? name, EmbeddingsJobOptions o) => Check(EmbeddingsJobOptions.Section, o.Embed.Validate);

    public ValidateOptionsResult Validate(string? name, FineTuningJobOptions o) =>
        Check(FineTuningJobOptions.Section, o.Training.Check, o.Validation.Check, () => NoInitPath(o.Training));

    public ValidateOptionsResult Validate(string? name, AlignmentJobOptions o) => Check(AlignmentJobOptions.Section, o.Align.Validate);

    public ValidateOptionsResult Validate(string? name, EvaluationJobOptions o) => Check(EvaluationJobOptions.Section, o.Evaluation.Check);

    public ValidateOptionsResult Validate(string? name, ExperimentJobOptions o) =>
        Check(ExperimentJobOptions.Section, o.Training.Check, o.Evaluation.Check, () => NoInitPath(o.Training));

    /// <summary>Initial weights come as an artifact set (hashed into the step key), never as a path.</summary>
    internal static void NoInitPath(TrainOptions training)
    {
        if (training.Init is not null)
            throw new LsvcrException($"Training:Init '{training.Init}': give initial weights as an artifact set in the request, not as a path");
    }
}

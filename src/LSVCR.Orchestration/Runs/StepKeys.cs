using System.Security.Cryptography;
using System.Text;

namespace LSVCR.Orchestration.Runs;

/// <summary>
/// The names of the pipeline's steps and the keys that identify one execution of a step: run, step and the hashes of
/// its inputs. A worker that receives a key it has finished republishes its result instead of redoing the work; a
/// changed input gives a new key. The embedded pipeline and the services use these same keys.
/// </summary>
public static class StepKeys
{
    public const string Dataset = "dataset";
    public const string Embeddings = "embeddings";
    public const string Alignment = "alignment";
    public const string Evaluation = "evaluation";
    public static string FineTuning(TaskKind task) => $"fine-tuning-{task.FileStem()}";

    /// <summary><c>{step}-{first 16 hex of SHA-256(run, step, inputs…)}</c>: short enough for blob paths and logs.</summary>
    public static string For(Guid runId, string step, params string?[] inputs)
    {
        var text = string.Join('\n', [runId.ToString("N"), step, .. inputs.Select(i => i ?? "")]);
        return $"{step}-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16]}";
    }

    /// <summary>A stable text form of options for hashing (records print their members).</summary>
    public static string Describe(object? options) => options is null ? "" : System.Text.Json.JsonSerializer.Serialize(options);
}

namespace LSVCR.Core;

/// <summary>
/// A progress report from a long library job. Libraries take an <see cref="IProgress{T}"/> of this and never
/// depend on a UI: the CLI renders it as progress bars, services as logs and metrics.
/// </summary>
/// <param name="Stage">Stable name of the step, e.g. "import", "embed photos", "epoch 3".</param>
/// <param name="Detail">Optional short status such as "loss 2.31, 812 samples/s".</param>
public readonly record struct JobProgress(string Stage, long Done, long Total, string? Detail = null);

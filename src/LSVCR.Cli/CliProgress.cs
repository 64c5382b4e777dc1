using LSVCR.Data;
using Spectre.Console;

namespace LSVCR.Cli;

/// <summary>
/// Shows library progress reports (<see cref="JobProgress"/>) as Spectre.Console progress bars, one task per stage.
/// Falls back to plain log lines when output is redirected (CI logs), so progress is visible either way.
/// </summary>
public static class CliProgress
{
    public static async Task<T> RunAsync<T>(Func<IProgress<JobProgress>, Task<T>> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            var plain = new PlainProgress();
            return await work(plain);
        }
        T result = default!;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var progress = new SyncProgress(p =>
                {
                    if (!tasks.TryGetValue(p.Stage, out var task))
                        tasks[p.Stage] = task = ctx.AddTask(Markup.Escape(p.Stage), maxValue: Math.Max(1, p.Total));
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = Math.Min(p.Done, task.MaxValue);
                    task.Description = Markup.Escape(p.Detail is null ? p.Stage : $"{p.Stage} {p.Detail}");
                });
                result = await work(progress);
                foreach (var t in tasks.Values) t.Value = t.MaxValue;
            });
        return result;
    }

    public static Task RunAsync(Func<IProgress<JobProgress>, Task> work) =>
        RunAsync<bool>(async p => { await work(p); return true; });

    /// <summary>Invokes the handler synchronously on the reporting thread (Spectre's context is thread-safe).</summary>
    private sealed class SyncProgress(Action<JobProgress> handler) : IProgress<JobProgress>
    {
        public void Report(JobProgress value) => handler(value);
    }

    /// <summary>Prints a line per stage at most every 2 s and at completion.</summary>
    private sealed class PlainProgress : IProgress<JobProgress>
    {
        private readonly Dictionary<string, (DateTime At, long Done)> _last = [];
        private readonly Lock _gate = new();

        public void Report(JobProgress p)
        {
            lock (_gate)
            {
                var now = DateTime.UtcNow;
                bool done = p.Done >= p.Total;
                if (_last.TryGetValue(p.Stage, out var last) && (last.Done >= p.Total || (!done && now - last.At < TimeSpan.FromSeconds(2))))
                    return;
                _last[p.Stage] = (now, p.Done);
                Console.Error.WriteLine($"[{now:HH:mm:ss}] {p.Stage}: {p.Done}/{p.Total}{(p.Detail is null ? "" : " " + p.Detail)}");
            }
        }
    }
}

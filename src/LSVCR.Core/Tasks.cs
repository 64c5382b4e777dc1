namespace LSVCR.Core;

/// <summary>The two recommendation tasks (MODEL.md §1): next-video recommendation and comment ranking.</summary>
public enum TaskKind { Rec, CommRank }

/// <summary>A dataset split.</summary>
public enum Split { Train, Val, Test }

public static class TaskNames
{
    /// <summary>File stem of a task in the reference layout: <c>rec</c> / <c>comm_rank</c>.</summary>
    public static string FileStem(this TaskKind task) => task == TaskKind.Rec ? "rec" : "comm_rank";
    public static string FileName(this Split split) => split switch { Split.Train => "train", Split.Val => "val", _ => "test" };
    public static string FileName(TaskKind task, Split split) => $"{task.FileStem()}.{split.FileName()}.json";
}

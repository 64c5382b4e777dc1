using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace LSVCR.Artifacts;

/// <summary>
/// Artifact sets in a local folder (the embedded CLI, tests). Files are written under the set's upload folder
/// (each under a temporary name, renamed when complete); the manifest is written to a temporary file and linked into place without overwriting (create-if-absent),
/// so a set is visible exactly when its manifest is. Files are read where they are, not copied: opening a set verifies
/// every file's hash once per store instance.
/// </summary>
public sealed class LocalArtifactStore : ArtifactStore
{
    public const string StoreName = "local";
    private const int CopyBuffer = 1 << 20;
    private readonly ConcurrentDictionary<string, bool> verified = new(StringComparer.Ordinal);

    public LocalArtifactStore(string root)
    {
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Root);
    }

    public string Root { get; }
    public override string Name => StoreName;

    private string Full(string storePath) => Path.Combine(Root, storePath.Replace('/', Path.DirectorySeparatorChar));

    protected internal override async Task<(string Sha256, long Size)> UploadAsync(string storePath, Stream content, CancellationToken ct)
    {
        var path = Full(storePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // Under a temporary name until complete, like a blob that exists only once committed: no file in the store is
        // ever a partial copy under its real name (the manifest would not list it anyway).
        var tmp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long size = 0;
        try
        {
            await using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, CopyBuffer, FileOptions.Asynchronous))
            {
                var buffer = new byte[CopyBuffer];
                int n;
                while ((n = await content.ReadAsync(buffer, ct)) > 0)
                {
                    hash.AppendData(buffer, 0, n);
                    await file.WriteAsync(buffer.AsMemory(0, n), ct);
                    size += n;
                }
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: false);
        }
        finally
        {
            File.Delete(tmp);
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), size);
    }

    protected internal override Task<bool> TryCreateAsync(string storePath, byte[] content, CancellationToken ct)
    {
        var path = Full(storePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (File.Exists(path)) return Task.FromResult(false);
        var tmp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
        {
            file.Write(content);
            file.Flush(flushToDisk: true);  // the manifest must never point at a file that a crash could lose
        }
        try
        {
            // Without overwrite, .NET moves by link + unlink on Unix: atomic, and fails if the manifest appeared meanwhile.
            File.Move(tmp, path, overwrite: false);
            return Task.FromResult(true);
        }
        catch (IOException) when (File.Exists(path))
        {
            return Task.FromResult(false);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    protected internal override Task PutAsync(string storePath, byte[] content, CancellationToken ct)
    {
        var path = Full(storePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);  // rename(2): atomic replacement
        }
        finally
        {
            File.Delete(tmp);
        }
        return Task.CompletedTask;
    }

    protected internal override async Task<byte[]?> TryReadAllAsync(string storePath, CancellationToken ct)
    {
        try { return await File.ReadAllBytesAsync(Full(storePath), ct); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
    }

    protected internal override Task DeleteObjectAsync(string storePath, CancellationToken ct)
    {
        File.Delete(Full(storePath));
        return Task.CompletedTask;
    }

    protected internal override Task DeletePrefixAsync(string prefix, CancellationToken ct)
    {
        var dir = Full(prefix.TrimEnd('/'));
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        return Task.CompletedTask;
    }

    protected override async Task<string> MaterializeAsync(ArtifactManifest manifest, CancellationToken ct)
    {
        var dir = Full($"{manifest.Set}/{manifest.DataPrefix}");
        if (verified.ContainsKey(manifest.Set + "\n" + manifest.ContentSha256)) return dir;
        foreach (var file in manifest.Files)
            await VerifyAsync(Path.Combine(dir, file.Path.Replace('/', Path.DirectorySeparatorChar)), file.Sha256, file.Size, Where(Name, manifest, file), ct);
        verified[manifest.Set + "\n" + manifest.ContentSha256] = true;
        return dir;
    }

    public override async Task<string> GetFileAsync(ArtifactReference file, CancellationToken ct = default)
    {
        CheckStore(file.Store);
        var path = Full(file.Path);
        if (!verified.ContainsKey(file.Path + "\n" + file.Sha256))
        {
            await VerifyAsync(path, file.Sha256, file.Size, $"{Name}:{file.Path}", ct);
            verified[file.Path + "\n" + file.Sha256] = true;
        }
        return path;
    }

    private static async Task VerifyAsync(string path, string sha256, long size, string where, CancellationToken ct)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ArtifactCorruptException($"{where}: listed in the manifest but missing ({path})");
        if (info.Length != size)
            throw new ArtifactCorruptException($"{where}: corrupted artifact: {info.Length} bytes, but the manifest lists {size}");
        var actual = await ContentHash.OfFileAsync(path, ct);
        if (actual != sha256)
            throw new ArtifactCorruptException($"{where}: corrupted artifact: SHA-256 {actual}, but the manifest lists {sha256}");
    }
}

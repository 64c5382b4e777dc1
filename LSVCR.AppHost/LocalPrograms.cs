namespace LSVCR.AppHost;

/// <summary>Finds the infrastructure programs the AppHost runs as local executables.</summary>
internal static class LocalPrograms
{
    public const string RabbitMqInstall = "apt-get install rabbitmq-server";
    public const string AzuriteInstall = "npm install -g azurite";

    /// <summary>The full path of <paramref name="program"/> on PATH or in the usual install folders, or null.</summary>
    public static string? Find(string program, params string[] extraFolders)
    {
        var folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(extraFolders);
        return folders.Where(f => f.Length > 0).Select(f => Path.Combine(f, program)).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// The paths of rabbitmq-server and azurite, or one error naming every missing program and its install command
    /// (the AppHost cannot start the suite without both; containers are not used on these machines).
    /// </summary>
    public static (string RabbitMq, string Azurite) Require()
    {
        var rabbit = Find("rabbitmq-server", "/usr/sbin", "/usr/lib/rabbitmq/bin");
        var azurite = Find("azurite", "/usr/local/bin", "/usr/bin");
        var missing = new List<string>();
        if (rabbit is null) missing.Add($"rabbitmq-server ({RabbitMqInstall})");
        if (azurite is null) missing.Add($"azurite ({AzuriteInstall})");
        if (missing.Count > 0)
            throw new InvalidOperationException(
                $"LSVCR.AppHost runs RabbitMQ and Azurite as local programs; not installed: {string.Join(", ", missing)}. " +
                $"Install with: {RabbitMqInstall} && {AzuriteInstall}");
        return (rabbit!, azurite!);
    }
}

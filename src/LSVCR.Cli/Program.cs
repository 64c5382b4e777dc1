using LSVCR.Cli;

return await LsvcrCli.Build().Parse(args).InvokeAsync();

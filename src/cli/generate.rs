//! `certgate completions SHELL` and `certgate man`: shell completions and the manual page,
//! generated from the same clap definitions that parse the command line, so they cannot
//! drift from it.

use std::io::{self, Write};

use clap_complete::Shell;

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = super::command();
    clap_complete::generate(shell, &mut cmd, "certgate", out);
}

/// Writes certgate(1): the top-level page, then one section per command (usage, description,
/// options), then the environment. One page rather than one per subcommand, so that
/// `certgate man > certgate.1` is the whole installation.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    top.render_title(&mut page)?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    for (path, sub) in commands(&cmd, "certgate") {
        writeln!(page, ".SH \"{}\"", path.to_uppercase())?;
        // The environment is the same for every command: it is said once, at the end.
        let man = clap_mangen::Man::new(sub.clone().after_help(None::<&str>));
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut section)?;
        }
        // Sections of the command become subsections of its own section.
        let section = String::from_utf8_lossy(&section).replace("\n.SH ", "\n.SS ");
        page.extend_from_slice(
            section
                .strip_prefix(".SH ")
                .map(|rest| format!(".SS {rest}"))
                .unwrap_or(section)
                .as_bytes(),
        );
    }
    let mut environment = Vec::new();
    top.render_extra_section(&mut environment)?;
    page.extend_from_slice(
        String::from_utf8_lossy(&environment)
            .replacen(".SH EXTRA", ".SH ENVIRONMENT", 1)
            .as_bytes(),
    );
    top.render_version_section(&mut page)?;
    out.write_all(&page)
}

/// Every visible command below `cmd`, depth first, with its full name (`certgate org create`).
pub fn commands(cmd: &clap::Command, prefix: &str) -> Vec<(String, clap::Command)> {
    let mut all = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let path = format!("{prefix} {}", sub.get_name());
        all.push((path.clone(), sub.clone()));
        all.extend(commands(sub, &path));
    }
    all
}

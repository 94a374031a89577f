//! The terminal view of `gproc top`: the [`App`] state (sort key, the
//! selected node, cluster, node or jobs view; the jobs view's drill-down
//! is [`JobsState`]), what each key does, and
//! [`draw`], which renders a [`ClusterTables`] with ratatui. Drawing takes any
//! backend, so tests render into ratatui's `TestBackend` and read the
//! buffer.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::Fetched;
use super::model::{
    ClusterTables, Filter, JobList, JobProcs, JobsState, SortKey, Want, human_kb, human_mb,
};
use super::text::{job_gone, job_summary, no_jobs, totals_text};
use gproc::format::rank::RankQuery;
use gproc::format::table::format_cputime;

/// Process rows a refresh asks for: more than any terminal shows.
const VIEW_ROWS: usize = 300;

/// What the screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Totals, the node list and the cluster's top processes.
    Cluster,
    /// One node: its load figures and its processes.
    Node(String),
    /// The jobs, or the processes of the job opened from them
    /// ([`App::jobs`]).
    Jobs,
}

/// What a key asks the event loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Only the view changed: redraw.
    Redraw,
    /// Read the tables again now.
    Refresh,
    /// Leave.
    Quit,
    /// Not a key we use.
    Ignore,
}

/// The view's state.
#[derive(Debug, Clone)]
pub struct App {
    /// The aggregator's address, for the title.
    pub server: String,
    /// Time between refreshes, for the title.
    pub interval: Duration,
    /// How processes are ranked.
    pub sort: SortKey,
    /// Which users and nodes are shown.
    pub filter: Filter,
    /// The last snapshot, filtered.
    pub snap: ClusterTables,
    /// Index of the selected node in `snap.node_names()`.
    pub selected: usize,
    /// Cluster, node or jobs view.
    pub mode: Mode,
    /// The jobs view's list, selection and open job.
    pub jobs: JobsState,
    /// Why the last refresh failed, shown until one succeeds.
    pub error: Option<String>,
}

impl App {
    /// A view with nothing read yet.
    pub fn new(server: String, interval: Duration, sort: SortKey, filter: Filter) -> Self {
        App {
            server,
            interval,
            sort,
            filter,
            snap: ClusterTables::default(),
            selected: 0,
            mode: Mode::Cluster,
            jobs: JobsState::default(),
            error: None,
        }
    }

    /// Starts in the view `want` names (`--jobs`, `-j JOBID`).
    pub fn start_at(&mut self, want: &Want) {
        match want {
            Want::Cluster => {}
            Want::Jobs => self.mode = Mode::Jobs,
            Want::Job(id) => {
                self.mode = Mode::Jobs;
                self.jobs.open = Some(id.clone());
            }
        }
    }

    /// What the next refresh reads.
    /// The rankings a cluster or node refresh reads: enough rows for any
    /// terminal ([`VIEW_ROWS`]), and the selected node's in the node view.
    pub fn rankings(&self) -> Option<Vec<RankQuery>> {
        let node = match &self.mode {
            Mode::Node(n) => Some(n.as_str()),
            _ => None,
        };
        super::model::rankings(self.sort, &self.filter, node, VIEW_ROWS)
    }

    /// What a refresh reads in the current mode.
    pub fn want(&self) -> Want {
        match self.mode {
            Mode::Cluster | Mode::Node(_) => Want::Cluster,
            Mode::Jobs => self.jobs.want(),
        }
    }

    /// Takes what a refresh read (a read for a view since left updates
    /// that view's data only).
    pub fn apply(&mut self, f: Fetched) {
        match f {
            Fetched::Cluster(s) => self.update(&s),
            Fetched::Jobs(l) => {
                self.jobs.set_list(l, self.sort, &self.filter);
                self.error = None;
            }
            Fetched::Job(id, p) => {
                self.jobs.set_procs(&id, p, &self.filter);
                self.error = None;
            }
        }
    }

    /// Takes a new snapshot (unfiltered; the filter is applied here). The
    /// selection follows the selected node by name.
    pub fn update(&mut self, raw: &ClusterTables) {
        let was = self.selected_node();
        self.snap = raw.filtered(&self.filter);
        self.error = None;
        let names = self.snap.node_names();
        self.selected = match was.and_then(|w| names.iter().position(|n| *n == w)) {
            Some(i) => i,
            None => self.selected.min(names.len().saturating_sub(1)),
        };
    }

    /// The selected node's name.
    pub fn selected_node(&self) -> Option<String> {
        self.snap.node_names().get(self.selected).cloned()
    }

    /// Handles one key press.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        let n = self.snap.node_names().len();
        match k.code {
            KeyCode::Char('q') => Action::Quit,
            // Read again: the rows held are the first by the other key.
            KeyCode::Char('c') => {
                self.sort = SortKey::Cpu;
                self.jobs.resort(self.sort);
                Action::Refresh
            }
            KeyCode::Char('m') => {
                self.sort = SortKey::Mem;
                self.jobs.resort(self.sort);
                Action::Refresh
            }
            KeyCode::Char('r') => Action::Refresh,
            KeyCode::Char('J') => {
                self.mode = if self.mode == Mode::Jobs {
                    Mode::Cluster
                } else {
                    Mode::Jobs
                };
                Action::Refresh
            }
            _ if self.mode == Mode::Jobs => self.jobs_key(k.code),
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                self.follow_selection();
                Action::Redraw
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1));
                self.follow_selection();
                Action::Redraw
            }
            KeyCode::PageUp => {
                self.selected = self.selected.saturating_sub(10);
                self.follow_selection();
                Action::Redraw
            }
            KeyCode::PageDown => {
                self.selected = (self.selected + 10).min(n.saturating_sub(1));
                self.follow_selection();
                Action::Redraw
            }
            KeyCode::Enter | KeyCode::Right => match self.selected_node() {
                Some(name) => {
                    self.mode = Mode::Node(name);
                    Action::Redraw
                }
                None => Action::Ignore,
            },
            KeyCode::Esc | KeyCode::Left | KeyCode::Backspace => {
                if self.mode == Mode::Cluster {
                    Action::Ignore
                } else {
                    self.mode = Mode::Cluster;
                    Action::Redraw
                }
            }
            _ => Action::Ignore,
        }
    }

    /// A key of the jobs view (the list, or a job opened from it).
    fn jobs_key(&mut self, code: KeyCode) -> Action {
        let step = |j: &mut JobsState, d: isize| {
            if j.open.is_none() {
                j.select(d);
                Action::Redraw
            } else {
                Action::Ignore
            }
        };
        match code {
            KeyCode::Up | KeyCode::Char('k') => step(&mut self.jobs, -1),
            KeyCode::Down | KeyCode::Char('j') => step(&mut self.jobs, 1),
            KeyCode::PageUp => step(&mut self.jobs, -10),
            KeyCode::PageDown => step(&mut self.jobs, 10),
            KeyCode::Enter | KeyCode::Right => {
                if self.jobs.open() {
                    Action::Refresh
                } else {
                    Action::Ignore
                }
            }
            KeyCode::Esc | KeyCode::Left | KeyCode::Backspace => {
                if !self.jobs.back() {
                    self.mode = Mode::Cluster;
                }
                Action::Refresh
            }
            _ => Action::Ignore,
        }
    }

    /// In the node view, moving the selection moves to that node.
    fn follow_selection(&mut self) {
        if let (Mode::Node(_), Some(n)) = (&self.mode, self.selected_node()) {
            self.mode = Mode::Node(n);
        }
    }
}

fn header_style() -> Style {
    Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
}

fn state_style(state: &str) -> Style {
    match state {
        "up" => Style::new().fg(Color::Green),
        "down" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    }
}

/// The title line: server, refresh interval, sort key, time of the data.
fn title(app: &App) -> Line<'static> {
    let taken = if app.mode == Mode::Jobs {
        app.jobs.taken()
    } else {
        app.snap.taken
    };
    let when = taken
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "waiting for data".into());
    let mut spans = vec![
        Span::styled("gproc top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  every {}  sort {}  {}",
            app.server,
            humantime::format_duration(app.interval),
            app.sort.label(),
            when
        )),
    ];
    let place = match (&app.mode, &app.jobs.open) {
        (Mode::Node(n), _) => Some(format!("  node {n}")),
        (Mode::Jobs, None) => Some("  jobs".to_string()),
        (Mode::Jobs, Some(id)) => Some(format!("  job {id}")),
        (Mode::Cluster, _) => None,
    };
    if let Some(p) = place {
        spans.push(Span::styled(p, Style::new().add_modifier(Modifier::BOLD)));
    }
    Line::from(spans)
}

fn footer(app: &App) -> Line<'static> {
    if let Some(e) = &app.error {
        return Line::from(Span::styled(
            format!("refresh failed: {e}"),
            Style::new().fg(Color::Red),
        ));
    }
    let keys = match (&app.mode, &app.jobs.open) {
        (Mode::Cluster, _) => {
            "q quit  c sort %CPU  m sort %MEM  ↑↓ select node  Enter node view  J jobs  r refresh"
        }
        (Mode::Node(_), _) => {
            "q quit  c sort %CPU  m sort %MEM  ↑↓ other node  Esc cluster view  J jobs  r refresh"
        }
        (Mode::Jobs, None) => {
            "q quit  c sort %CPU  m sort RSS  ↑↓ select job  Enter job's processes  Esc/J cluster view  r refresh"
        }
        (Mode::Jobs, Some(_)) => {
            "q quit  c sort %CPU  m sort %MEM  Esc back to jobs  J cluster view  r refresh"
        }
    };
    let mut s = keys.to_string();
    let notes = match (&app.mode, &app.jobs.list, &app.jobs.procs) {
        (Mode::Jobs, _, Some(JobProcs::Listed(t))) if app.jobs.open.is_some() => &t.notes[..],
        (Mode::Jobs, Some(JobList::Listed { notes, .. }), _) if app.jobs.open.is_none() => {
            &notes[..]
        }
        (Mode::Jobs, ..) => &[],
        _ => &app.snap.notes[..],
    };
    if let Some(first) = notes.first() {
        s.push_str(&format!("   ({} notes: {first})", notes.len()));
    }
    Line::from(s)
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let [top, totals, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(title(app)), top);
    if app.mode == Mode::Jobs {
        f.render_widget(Paragraph::new(jobs_totals(app)), totals);
        match &app.jobs.open {
            None => draw_jobs(f, app, body),
            Some(id) => draw_job(f, app, id, body),
        }
        f.render_widget(Paragraph::new(footer(app)), foot);
        return;
    }
    f.render_widget(Paragraph::new(totals_text(&app.snap)), totals);
    match &app.mode {
        Mode::Cluster => {
            let names = app.snap.node_names().len() as u16;
            let node_h = (names + 3).min(body.height / 2).max(4);
            let [nodes, procs] =
                Layout::vertical([Constraint::Length(node_h), Constraint::Min(3)]).areas(body);
            draw_nodes(f, app, nodes);
            draw_procs(f, &app.snap, app.sort, None, " Processes", procs);
        }
        Mode::Node(name) => {
            let [detail, procs] =
                Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(body);
            draw_node_detail(f, app, name, detail);
            draw_procs(f, &app.snap, app.sort, Some(name), " Processes", procs);
        }
        Mode::Jobs => {}
    }
    f.render_widget(Paragraph::new(footer(app)), foot);
}

fn draw_nodes(f: &mut Frame<'_>, app: &App, area: Rect) {
    let names = app.snap.node_names();
    let rows = names.iter().map(|name| {
        let state = app.snap.node(name).map(|n| n.state.as_str()).unwrap_or("?");
        let l = app.snap.load_of(name);
        let num = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let err = app
            .snap
            .node(name)
            .and_then(|n| n.error.clone())
            .unwrap_or_default();
        Row::new(vec![
            Span::raw(name.clone()),
            Span::styled(state.to_string(), state_style(state)),
            Span::raw(num(l.map(|l| format!("{:.2}", l.load[0])))),
            Span::raw(num(l.map(|l| format!("{:.2}", l.load[1])))),
            Span::raw(num(l.map(|l| format!("{:.2}", l.load[2])))),
            Span::raw(num(l.map(|l| l.cpus.to_string()))),
            Span::raw(num(l.map(|l| format!("{:.0}%", l.mem_pct())))),
            Span::raw(num(l.map(|l| human_mb(l.mem_total_mb)))),
            Span::raw(num(l.map(|l| l.procs.to_string()))),
            Span::raw(num(l.map(|l| l.uptime.to_string()))),
            Span::raw(err),
        ])
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    let header = Row::new(vec![
        "NODE", "STATE", "LOAD1", "LOAD5", "LOAD15", "CPUS", "MEM%", "MEM", "PROCS", "UPTIME",
        "ERROR",
    ])
    .style(header_style());
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(format!(" Nodes ({}) ", names.len())))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_node_detail(f: &mut Frame<'_>, app: &App, name: &str, area: Rect) {
    let node = app.snap.node(name);
    let mut lines = vec![Line::from(vec![
        Span::raw(format!("{name}  ")),
        match node {
            Some(n) => Span::styled(n.state.clone(), state_style(&n.state)),
            None => Span::raw("not in /nodes"),
        },
        Span::raw(match node {
            Some(n) => format!(
                "  {}  rtt {}",
                n.address,
                n.rtt_ms
                    .map(|r| format!("{r:.2} ms"))
                    .unwrap_or_else(|| "-".into())
            ),
            None => String::new(),
        }),
    ])];
    match app.snap.load_of(name) {
        Some(l) => {
            lines.push(Line::from(format!(
                "load {:.2} {:.2} {:.2}   running {}/{}   cpus {}   uptime {}",
                l.load[0], l.load[1], l.load[2], l.running, l.tasks, l.cpus, l.uptime
            )));
            lines.push(Line::from(format!(
                "mem {} used / {} total ({:.0}%), {} available   procs {}",
                human_mb(l.mem_used_mb),
                human_mb(l.mem_total_mb),
                l.mem_pct(),
                human_mb(l.mem_avail_mb),
                l.procs
            )));
        }
        None => lines.push(Line::from("no load figures")),
    }
    if let Some(error) = node.and_then(|n| n.error.as_ref()) {
        lines.push(Line::from(Span::styled(
            format!("error: {error}"),
            Style::new().fg(Color::Red),
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" Node {name} "))),
        area,
    );
}

/// The totals line of the jobs view: the jobs listed and their sums, or
/// the open job's.
fn jobs_totals(app: &App) -> String {
    match (&app.jobs.open, &app.jobs.procs) {
        (Some(id), procs) => {
            let mut line = match procs {
                Some(JobProcs::Listed(t)) => job_summary(id, t),
                _ => format!("Job {id}"),
            };
            if let Some(r) = app.jobs.open_row() {
                line.push_str(&format!("   User: {}   Nodes: {}", r.user, r.nodes));
            }
            line
        }
        (None, _) => {
            let rows = app.jobs.rows();
            format!(
                "Jobs: {}   Procs: {}   %CPU: {:.1}   RSS: {}",
                rows.len(),
                rows.iter().map(|r| r.procs).sum::<u64>(),
                rows.iter().map(|r| r.cpu_tenths).sum::<u64>() as f64 / 10.0,
                human_kb(rows.iter().map(|r| r.rss_kb).sum())
            )
        }
    }
}

/// A message in place of a table.
fn draw_message(f: &mut Frame<'_>, title: String, msg: String, style: Style, area: Rect) {
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(msg, style))).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_jobs(f: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = match &app.jobs.list {
        None => {
            let msg = "reading /jobs ...".to_string();
            return draw_message(f, " Jobs ".into(), msg, Style::new(), area);
        }
        Some(JobList::NotServed) => {
            let msg = no_jobs(&app.server);
            let style = Style::new().fg(Color::Yellow);
            return draw_message(f, " Jobs ".into(), msg, style, area);
        }
        Some(JobList::Listed { rows, .. }) => rows,
    };
    let lines = rows.iter().map(|r| {
        Row::new(vec![
            r.job.clone(),
            r.user.clone(),
            r.nnodes.to_string(),
            r.procs.to_string(),
            format!("{:.1}", r.cpu()),
            human_kb(r.rss_kb),
            r.states_cell(),
            if r.nodes.is_empty() {
                "-".into()
            } else {
                r.nodes.clone()
            },
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    let header = Row::new(vec![
        "JOBID", "USER", "NNODES", "PROCS", "%CPU", "RSS", "STATES", "NODES",
    ])
    .style(header_style());
    let key = match app.sort {
        SortKey::Cpu => "%CPU",
        SortKey::Mem => "RSS",
    };
    let table = Table::new(lines, widths)
        .header(header)
        .block(Block::bordered().title(format!(" Jobs by {key} ({}) ", rows.len())))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(app.jobs.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_job(f: &mut Frame<'_>, app: &App, id: &str, area: Rect) {
    let title = format!(" Job {id} ");
    match &app.jobs.procs {
        None => {
            let msg = format!("reading /job/{id}/ps ...");
            draw_message(f, title, msg, Style::new(), area);
        }
        Some(JobProcs::Gone) => {
            let msg = format!("{}   (Esc: back to the jobs)", job_gone(id));
            let style = Style::new().fg(Color::Yellow);
            draw_message(f, title, msg, style, area);
        }
        Some(JobProcs::Listed(t)) => {
            let title = format!(" Job {id}: processes");
            draw_procs(f, t, app.sort, None, &title, area);
        }
    }
}

fn draw_procs(
    f: &mut Frame<'_>,
    snap: &ClusterTables,
    sort: SortKey,
    node: Option<&str>,
    what: &str,
    area: Rect,
) {
    let n = area.height.saturating_sub(3) as usize;
    let top = snap.top(sort, node, n);
    let rows = top.iter().map(|p| {
        Row::new(vec![
            p.node.clone(),
            p.pid.to_string(),
            p.user.clone(),
            format!("{:.1}", p.cpu),
            format!("{:.1}", p.mem),
            human_kb(p.rss_kb),
            format_cputime(p.time),
            p.state.to_string(),
            p.job.clone().unwrap_or_else(|| "-".into()),
            p.step.clone().unwrap_or_else(|| "-".into()),
            p.gpu.clone().unwrap_or_else(|| "-".into()),
            p.command.clone(),
        ])
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    let header = Row::new(vec![
        "NODE", "PID", "USER", "%CPU", "%MEM", "RSS", "TIME", "S", "JOBID", "STEP", "GPU",
        "COMMAND",
    ])
    .style(header_style());
    let total = snap
        .procs
        .iter()
        .filter(|p| node.is_none_or(|name| p.node == name))
        .count();
    let title = format!("{what} by {} ({total}) ", sort.label());
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::tests::snap;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(140, 30)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let w = buf.area.width as usize;
        buf.content()
            .chunks(w)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn app() -> App {
        let mut a = App::new(
            "agg:5640".into(),
            Duration::from_secs(2),
            SortKey::Cpu,
            Filter::default(),
        );
        a.update(&snap());
        a
    }

    fn press(a: &mut App, c: KeyCode) -> Action {
        a.key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    #[test]
    fn cluster_view_shows_nodes_totals_and_top_processes() {
        let a = app();
        let s = screen(&a);
        for want in [
            "gproc top",
            "agg:5640",
            "every 2s",
            "Nodes: 2 up, 1 down, 3 total",
            "Procs: 5",
            "CPUs: 24",
            "n1",
            "n2",
            "n3",
            "down",
            "Connection refused",
            "./sim --big",
        ] {
            assert!(s.contains(want), "{want:?} missing:\n{s}");
        }
        // The top process by CPU is listed before the second.
        let first = s.find("./sim --big").unwrap();
        let second = s.find("bob-job").unwrap();
        assert!(first < second, "{s}");
    }

    #[test]
    fn keys_sort_select_and_drill_down() {
        let mut a = app();
        // The rows held are the first by %CPU: read the memory ranking.
        assert_eq!(press(&mut a, KeyCode::Char('m')), Action::Refresh);
        assert_eq!(a.sort, SortKey::Mem);
        let r = a.rankings().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].to_string(), format!("mem:rows={VIEW_ROWS}"));
        let s = screen(&a);
        assert!(
            s.find("python train.py").unwrap() < s.find("./sim --big").unwrap(),
            "{s}"
        );
        press(&mut a, KeyCode::Down);
        assert_eq!(a.selected_node().as_deref(), Some("n2"));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.mode, Mode::Node("n2".into()));
        // The cluster's ranking (its count is the totals') and the node's.
        let r: Vec<String> = a
            .rankings()
            .unwrap()
            .iter()
            .map(|q| q.to_string())
            .collect();
        assert_eq!(
            r,
            [
                format!("mem:rows={VIEW_ROWS}"),
                format!("mem:rows={VIEW_ROWS}:hosts=n2")
            ]
        );
        let s = screen(&a);
        assert!(s.contains("Node n2"), "{s}");
        assert!(s.contains("uptime 3d+02:00"), "{s}");
        assert!(s.contains("python train.py"), "{s}");
        assert!(!s.contains("./sim --big"), "only n2's processes:\n{s}");
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.mode, Mode::Cluster);
        assert_eq!(press(&mut a, KeyCode::Char('q')), Action::Quit);
        assert_eq!(
            a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
    }

    #[test]
    fn the_jobs_view_drills_into_a_job_and_back() {
        use crate::top::model::tests::{JOB_PS, JOBS};
        let mut a = app();
        assert_eq!(a.want(), Want::Cluster);
        assert!(screen(&a).contains("J jobs"), "the key is on the footer");
        assert_eq!(press(&mut a, KeyCode::Char('J')), Action::Refresh);
        assert_eq!((a.mode.clone(), a.want()), (Mode::Jobs, Want::Jobs));
        assert!(screen(&a).contains("reading /jobs"));
        a.apply(Fetched::Jobs(JobList::parse(JOBS)));
        let s = screen(&a);
        for want in [
            "Jobs by %CPU (3)",
            "1234",
            "n[001-064]",
            "R128,S2",
            "Jobs: 3",
        ] {
            assert!(s.contains(want), "{want:?} missing:\n{s}");
        }
        assert!(s.find("1250").unwrap() < s.find("carol").unwrap(), "{s}");
        press(&mut a, KeyCode::Char('m'));
        let s = screen(&a);
        assert!(s.find("carol").unwrap() < s.find("1250").unwrap(), "{s}");
        let sel = |a: &App| a.jobs.selected_row().map(|r| r.job.clone());
        assert_eq!(sel(&a).as_deref(), Some("1234"), "follows its job");
        press(&mut a, KeyCode::Down);
        assert_eq!(sel(&a).as_deref(), Some("1250"));
        press(&mut a, KeyCode::Up);
        assert_eq!(sel(&a).as_deref(), Some("1234"));
        assert_eq!(press(&mut a, KeyCode::Enter), Action::Refresh);
        assert_eq!(a.want(), Want::Job("1234".into()));
        a.apply(Fetched::Job("1234".into(), JobProcs::parse(JOB_PS)));
        let s = screen(&a);
        for want in [
            "job 1234",
            "Job 1234: processes by %MEM (3)",
            "Job 1234: 3 procs on 2 nodes",
            "User: alice",
            "./sim --rank 2",
            "Esc back to jobs",
        ] {
            assert!(s.contains(want), "{want:?} missing:\n{s}");
        }
        // The job ends while shown.
        a.apply(Fetched::Job("1234".into(), JobProcs::Gone));
        let s = screen(&a);
        assert!(s.contains("job 1234: no such job: it ended"), "{s}");
        assert_eq!(press(&mut a, KeyCode::Esc), Action::Refresh);
        assert_eq!((a.mode.clone(), a.want()), (Mode::Jobs, Want::Jobs));
        assert_eq!(press(&mut a, KeyCode::Esc), Action::Refresh);
        assert_eq!(a.mode, Mode::Cluster);
        // An aggregator without /jobs.
        press(&mut a, KeyCode::Char('J'));
        a.apply(Fetched::Jobs(JobList::NotServed));
        let s = screen(&a);
        assert!(
            s.contains("the aggregator at agg:5640 has no /jobs: upgrade it"),
            "{s}"
        );
        assert_eq!(press(&mut a, KeyCode::Enter), Action::Ignore);
        assert_eq!(press(&mut a, KeyCode::Char('J')), Action::Refresh);
        assert_eq!(a.mode, Mode::Cluster);
    }

    #[test]
    fn starting_on_a_job() {
        let mut a = app();
        a.start_at(&Want::Job("77".into()));
        assert_eq!(a.want(), Want::Job("77".into()));
        assert!(screen(&a).contains("reading /job/77/ps"));
        // Back from it: the jobs list, read next.
        press(&mut a, KeyCode::Backspace);
        assert_eq!(a.want(), Want::Jobs);
    }

    #[test]
    fn the_selection_follows_its_node_across_refreshes() {
        let mut a = app();
        press(&mut a, KeyCode::Down);
        press(&mut a, KeyCode::Down);
        assert_eq!(a.selected_node().as_deref(), Some("n3"));
        let mut s = snap();
        s.nodes.remove(0); // n1 gone from /nodes and /load
        s.load.remove(0);
        a.update(&s);
        assert_eq!(a.selected_node().as_deref(), Some("n3"));
    }
}

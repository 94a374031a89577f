//! The terminal view of `gproc top`: the [`App`] state (sort key, the
//! selected node, cluster or node view), what each key does, and
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

use super::model::{ClusterTables, Filter, SortKey, human_kb, human_mb};
use super::text::totals_text;
use gproc::format::table::format_cputime;

/// What the screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Totals, the node list and the cluster's top processes.
    Cluster,
    /// One node: its load figures and its processes.
    Node(String),
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
    /// Cluster or node view.
    pub mode: Mode,
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
            error: None,
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
            KeyCode::Char('c') => {
                self.sort = SortKey::Cpu;
                Action::Redraw
            }
            KeyCode::Char('m') => {
                self.sort = SortKey::Mem;
                Action::Redraw
            }
            KeyCode::Char('r') => Action::Refresh,
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
    let when = app
        .snap
        .taken
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
    if let Mode::Node(n) = &app.mode {
        spans.push(Span::styled(
            format!("  node {n}"),
            Style::new().add_modifier(Modifier::BOLD),
        ));
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
    let keys = match app.mode {
        Mode::Cluster => {
            "q quit  c sort %CPU  m sort %MEM  ↑↓ select node  Enter node view  r refresh"
        }
        Mode::Node(_) => {
            "q quit  c sort %CPU  m sort %MEM  ↑↓ other node  Esc cluster view  r refresh"
        }
    };
    let mut s = keys.to_string();
    if !app.snap.notes.is_empty() {
        s.push_str(&format!(
            "   ({} notes: {})",
            app.snap.notes.len(),
            app.snap.notes[0]
        ));
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
    f.render_widget(Paragraph::new(totals_text(&app.snap)), totals);
    match &app.mode {
        Mode::Cluster => {
            let names = app.snap.node_names().len() as u16;
            let node_h = (names + 3).min(body.height / 2).max(4);
            let [nodes, procs] =
                Layout::vertical([Constraint::Length(node_h), Constraint::Min(3)]).areas(body);
            draw_nodes(f, app, nodes);
            draw_procs(f, app, None, procs);
        }
        Mode::Node(name) => {
            let [detail, procs] =
                Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(body);
            draw_node_detail(f, app, name, detail);
            draw_procs(f, app, Some(name), procs);
        }
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

fn draw_procs(f: &mut Frame<'_>, app: &App, node: Option<&str>, area: Rect) {
    let n = area.height.saturating_sub(3) as usize;
    let top = app.snap.top(app.sort, node, n);
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
    let total = app
        .snap
        .procs
        .iter()
        .filter(|p| node.is_none_or(|name| p.node == name))
        .count();
    let title = format!(" Processes by {} ({total}) ", app.sort.label());
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
        assert_eq!(press(&mut a, KeyCode::Char('m')), Action::Redraw);
        assert_eq!(a.sort, SortKey::Mem);
        let s = screen(&a);
        assert!(
            s.find("python train.py").unwrap() < s.find("./sim --big").unwrap(),
            "{s}"
        );
        press(&mut a, KeyCode::Down);
        assert_eq!(a.selected_node().as_deref(), Some("n2"));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.mode, Mode::Node("n2".into()));
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

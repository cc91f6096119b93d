//! Page objects: the dashboard's pages as the tests use them. Selectors live here, once; a
//! test says what it does (`browser.devices().add(...)`, `browser.runs().open(1)`), and a
//! changed id or class is fixed in one place.

use crate::Browser;

/// The dashboard's pages, as its navigation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Lab,
    Registry,
    Devices,
    Fleet,
    Logs,
    Settings,
}

impl Page {
    /// The navigation button's selector.
    pub fn nav(self) -> &'static str {
        match self {
            Page::Lab => "#nav-lab",
            Page::Registry => "#nav-registry",
            Page::Devices => "#nav-devices",
            Page::Fleet => "#nav-fleet",
            Page::Logs => "#nav-logs",
            Page::Settings => "#nav-settings",
        }
    }
}

impl Browser {
    /// Shows a page (clicks its navigation button).
    pub async fn go(&self, page: Page) {
        self.click(page.nav()).await;
    }

    /// The runs table of the Lab page.
    pub fn runs(&self) -> RunsTable<'_> {
        RunsTable(self)
    }

    /// The Devices page.
    pub fn devices(&self) -> DevicesPage<'_> {
        DevicesPage(self)
    }

    /// The Data panel of the Lab page.
    pub fn data(&self) -> DataPanel<'_> {
        DataPanel(self)
    }

    /// The Registry page.
    pub fn registry(&self) -> RegistryPage<'_> {
        RegistryPage(self)
    }

    /// The Train panel of the Lab page.
    pub fn train(&self) -> TrainPanel<'_> {
        TrainPanel(self)
    }
}

/// The Train panel.
pub struct TrainPanel<'a>(&'a Browser);

impl TrainPanel<'_> {
    pub const BUTTON: &'static str = "#train";
    pub const ERROR: &'static str = "[data-testid=train-error]";

    /// The field of a hyperparameter (`max_depth`, `n_trees`, ...).
    pub fn param(name: &str) -> String {
        format!("#param-{name}")
    }

    /// Types a hyperparameter's value.
    pub async fn set_param(&self, name: &str, value: &str) {
        self.0.fill(&Self::param(name), value).await;
    }

    /// Clicks Train (without waiting for the run).
    pub async fn start(&self) {
        self.0.click(Self::BUTTON).await;
    }

    /// Waits for the Train panel's error and returns it.
    pub async fn error(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0.wait_text(Self::ERROR, what, pred).await
    }
}

/// The runs table: rows count from 1, newest first unless sorted otherwise.
pub struct RunsTable<'a>(&'a Browser);

impl RunsTable<'_> {
    pub const FILTER: &'static str = "#run-filter";
    pub const COUNT: &'static str = "[data-testid=run-count]";

    /// Row `n` (from 1) of the table.
    pub fn row(n: usize) -> String {
        format!("table.runs tbody tr:nth-child({n})")
    }

    /// Something inside row `n`, e.g. `a.run-name`, `td.name`, `[data-testid=run-metric]`.
    pub fn cell(n: usize, css: &str) -> String {
        format!("{} {css}", Self::row(n))
    }

    /// Opens run `n`'s details (clicks its name).
    pub async fn open(&self, n: usize) {
        self.0.click(&Self::cell(n, "a.run-name")).await;
    }

    /// Ticks or unticks run `n` for the compare view.
    pub async fn toggle_compare(&self, n: usize) {
        self.0.click(&Self::cell(n, "input.compare")).await;
    }

    /// Clicks run `n`'s Compile button (without waiting for the module).
    pub async fn compile(&self, n: usize) {
        self.0.click(&Self::cell(n, "button.compile")).await;
    }

    /// Types a query into the runs filter.
    pub async fn filter(&self, query: &str) {
        self.0.fill(Self::FILTER, query).await;
    }
}

/// A device as the Devices page's form takes it.
#[derive(Debug, Clone, Copy)]
pub struct DeviceForm<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub token: &'a str,
    /// Telemetry window in seconds; `None` keeps the form's default.
    pub window_s: Option<u64>,
}

/// The Devices page (alerts, the devices table, a device's details).
pub struct DevicesPage<'a>(&'a Browser);

impl DevicesPage<'_> {
    pub const PULL_ALL: &'static str = "#pull-all";

    /// The table row of the device at `url`.
    pub fn row(url: &str) -> String {
        format!("tr[data-device='{url}']")
    }

    /// A cell of the device's row by its test id: `device-status`, `device-active`,
    /// `device-follow`, `device-last-seen`, `device-error`.
    pub fn cell(url: &str, testid: &str) -> String {
        format!("{} [data-testid={testid}]", Self::row(url))
    }

    /// Fills the device form and saves it (the Devices page must be shown).
    pub async fn add(&self, d: DeviceForm<'_>) {
        self.0.fill("#device-name", d.name).await;
        self.0.fill("#device-url", d.url).await;
        self.0.fill("#device-token", d.token).await;
        if let Some(w) = d.window_s {
            self.0.fill("#device-window", &w.to_string()).await;
        }
        self.0.click("#device-save").await;
    }

    /// Saves a new token for the device whose form is open (its details are shown).
    pub async fn save_token(&self, token: &str) {
        self.0.fill("#device-token", token).await;
        self.0.click("#device-save").await;
    }

    /// Waits until the device's status cell satisfies `pred`; returns it.
    pub async fn wait_status(&self, url: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0
            .wait_text(&Self::cell(url, "device-status"), what, pred)
            .await
    }

    /// Clicks "Pull telemetry now".
    pub async fn pull_all(&self) {
        self.0.click(Self::PULL_ALL).await;
    }

    /// Opens the device's details (clicks its name in the table).
    pub async fn open(&self, url: &str) {
        self.0
            .click(&format!("{} a.device-link", Self::row(url)))
            .await;
    }
}

/// The Data panel: CSV import.
pub struct DataPanel<'a>(&'a Browser);

impl DataPanel<'_> {
    pub const FILE: &'static str = "#csv-file";
    pub const NOTICE: &'static str = "[data-testid=csv-notice]";

    /// Chooses a CSV file (the panel then shows its preview, problems and columns).
    pub async fn choose(&self, path: &std::path::Path) {
        self.0.upload(Self::FILE, path).await;
    }

    /// Clicks Import (the chosen file, as previewed).
    pub async fn import(&self) {
        self.0.click("#csv-import").await;
    }

    /// Waits for the import notice and returns it.
    pub async fn notice(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0.wait_text(Self::NOTICE, what, pred).await
    }
}

/// The Registry page: versions, aliases, deploying the open version.
pub struct RegistryPage<'a>(&'a Browser);

impl RegistryPage<'_> {
    pub const RESULT: &'static str = "[data-testid=deploy-result]";

    /// Ticks or unticks the device at `url` as a deploy target; `None`: the first device.
    pub async fn toggle_target(&self, url: Option<&str>) {
        match url {
            Some(url) => {
                self.0
                    .click(&format!("input.deploy-target[data-device='{url}']"))
                    .await
            }
            None => self.0.click("input.deploy-target").await,
        }
    }

    /// Clicks Deploy (to the ticked devices).
    pub async fn deploy(&self) {
        self.0.click("#deploy").await;
    }

    /// Waits for the deployment's result lines and returns their text.
    pub async fn result(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0.wait_text(Self::RESULT, what, pred).await
    }
}

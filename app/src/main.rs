fn main() {
    // A panic stops the app; say so on the page (not only in the console), with the message,
    // since nothing after it will react any more.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        if let Some(body) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.body())
        {
            let note = format!(
                "<p class=\"error banner\" data-testid=\"crash\">The dashboard stopped after an internal error; reload the page (stored data is kept). {}</p>",
                info.to_string().replace('<', "&lt;")
            );
            let _ = body.insert_adjacent_html("afterbegin", &note);
        }
    }));
    leptos::mount::mount_to_body(wasmops_app::App);
}
